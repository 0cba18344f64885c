"""The SIP tests (real pjsua2 edges and callers on 127.0.0.1) and the helpers and subprocess scripts they use."""
