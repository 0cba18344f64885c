"""Test helpers that are not tests: fakes, fixtures data readers, servers and measuring aids shared by the suite."""
