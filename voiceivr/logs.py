"""Structured logs: ``key=value`` text by default, one JSON object per line when asked.

Fields go in ``extra={...}``. Transcripts, digits, OTPs and account numbers never go into log records: they
belong in the audit trail. :class:`RedactingFilter` is a second line of defence: it masks runs of four or
more digits in messages, the passwords of URLs, and refuses known-sensitive field names.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from voiceivr.settings import redact_urls

SENSITIVE_FIELDS = frozenset({"transcript", "digits", "otp", "code", "pin", "account", "account_number", "text"})
_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_DIGIT_RUN = re.compile(r"\d[\d\s-]{2,}\d")


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _DIGIT_RUN.sub(lambda m: "#" * 4 if sum(c.isdigit() for c in m.group()) >= 4 else m.group(),
                                    redact_urls(str(record.msg)))
        if isinstance(record.args, tuple):
            record.args = tuple(redact_urls(a) if isinstance(a, str) else a for a in record.args)
        for key, value in list(vars(record).items()):
            if key in SENSITIVE_FIELDS:
                setattr(record, key, "[redacted]")
            elif key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact_urls(value))  # a database URL's password, in the user part or ?password=
        return True


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = self.formatTime(record, "%H:%M:%S")
        base = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in sorted(_extra_fields(record).items()))
        text = f"{base} {extras}" if extras else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj.update({k: v if isinstance(v, str | int | float | bool | None) else repr(v)
                    for k, v in _extra_fields(record).items()})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def configure(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # alembic narrates every step at INFO; operators want the result, which our commands print.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
