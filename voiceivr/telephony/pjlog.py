"""pjsip's own log lines, all through the ``voiceivr.pjsip`` logger.

From ``libInit`` on, pjsua2 hands every line to :class:`PjLogWriter`. Before that -- while ``libCreate`` and
``libInit`` run -- pjlib writes with its built-in writer, ``printf`` to file descriptor 1: ``os_core_unix.c
!pjlib 2.15.1 for POSIX initialized``, ``sip_endpoint.c .Creating endpoint instance...``, ``pjsua_core.c
.PJSUA state changed: NULL --> CREATED``, raw, on the stdout of ``voiceivr call --json`` and of every worker
(before its READY line), on every start. :func:`startup_lines_logged` catches those in a temporary file while
the library starts and logs them, parsed, like the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pjsua2 as pj

PJ_LOGGER = "voiceivr.pjsip"
_PJ_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
# pjlib's default decoration: time, the sender right-aligned, then indent dots and markers.
_DECORATED = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}\.\d{3}\s+(?P<sender>\S+)\s+[.!]*\s*(?P<msg>.*?)\s*$")


class PjLogWriter(pj.LogWriter):
    """pjsua2's log writer once ``libInit`` has installed it (``logConfig.decor = 0``: the message only)."""

    def write(self, entry: Any) -> None:
        try:
            logging.getLogger(PJ_LOGGER).log(
                _PJ_LEVELS.get(entry.level, logging.DEBUG), entry.msg.rstrip(), extra={"pj_thread": entry.threadName}
            )
        except Exception:  # never into SWIG: a failing log line must not break pjsip
            pass


def log_startup_lines(text: str) -> int:
    """Log what pjlib printed before our writer was installed; returns how many lines. pjlib's default writer
    prints no level, and what it says while starting is chatter (levels 4-5): DEBUG."""
    logger = logging.getLogger(PJ_LOGGER)
    count = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        m = _DECORATED.match(raw)
        msg, sender = (m.group("msg"), m.group("sender")) if m else (raw.strip(), "")
        logger.debug(msg, extra={"pj_sender": sender, "pj_startup": True})
        count += 1
    return count


@contextlib.contextmanager
def startup_lines_logged() -> Iterator[None]:
    """Around ``libCreate`` and ``libInit``: file descriptor 1 goes to a temporary file, whose lines are logged
    afterwards (a pipe could fill up and block pjlib; a file cannot)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            yield
        finally:
            _flush_c_stdio()  # pjlib's printf may still hold the lines in the C library's buffer
            os.dup2(saved, 1)
            os.close(saved)
            capture.seek(0)
            log_startup_lines(capture.read().decode("utf-8", "replace"))


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
