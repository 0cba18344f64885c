"""One onnxruntime session per model file and process, shared by every call (the VAD, the end-of-turn model).

``InferenceSession.run`` is thread-safe and releases the GIL, so the calls' workers share one session; each
runs on one intra-op thread (the calls run side by side, and a thread pool on one small window only adds
wake-up latency). onnxruntime is imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voiceivr.errors import VoiceivrError

_SESSIONS: dict[str, Any] = {}
_LOCK = threading.Lock()


def shared_session(path: Path, *, what: str, setting: str, error: type[VoiceivrError],
                   check: Callable[[Any], str | None], missing_hint: str | None = None) -> Any:
    """The process's session for the model file ``path`` (loaded on first use). ``what`` names the model and
    ``setting`` the setting that points at it, in the ``error`` raised for a missing or unloadable file;
    ``check`` looks at a fresh session and says what is wrong with it, the error's message (None: it is the
    expected model)."""
    import onnxruntime as ort

    key = str(path.resolve())
    with _LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
        if not path.is_file():
            raise error(f"{what} {path} does not exist (setting {setting})", hint=missing_hint)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise error(f"{what} {path} cannot be loaded (setting {setting}): {exc}") from None
        problem = check(session)
        if problem is not None:
            raise error(problem)
        _SESSIONS[key] = session
        return session
