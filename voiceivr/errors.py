"""Exception classes with messages a person can act on.

Every error the CLI can meet in normal operation is a :class:`VoiceivrError`; the CLI prints its message
on one line (and the hint, if any, on a second) and exits non-zero, with no traceback.
"""

from __future__ import annotations


class VoiceivrError(Exception):
    """Base class: ``str(exc)`` says what is wrong; ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(VoiceivrError):
    """A setting is malformed or names something that does not exist."""

    exit_code = 2


class DatabaseUnavailable(VoiceivrError):
    """The database cannot be reached or the URL is wrong."""


class SchemaOutOfDate(VoiceivrError):
    """The database schema is older (or newer) than this code."""


class AuditIntegrityError(VoiceivrError):
    """The audit trail was changed after it was written."""

    def __init__(self, message: str, first_bad_seq: int | None) -> None:
        super().__init__(message)
        self.first_bad_seq = first_bad_seq
