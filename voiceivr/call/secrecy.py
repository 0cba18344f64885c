"""Secret input: while the caller keys or says a PIN or a one-time code, nothing keeps what they gave.

The dialplan knows when the answer is a secret (a slot marked ``secret: true``, which every slot filling a secret
action parameter must be, and the one-time code); it says so on the :class:`~voiceivr.call.brain.Listen` it hands
the session. From then until the answer has been taken, the session:

* puts no digits or words on the timeline (:class:`~voiceivr.call.events.DtmfDigit`, ``DigitsCollected``,
  ``TranscriptFinal`` carry ``secret=True`` and nothing else), so turn rows, replay output and anything else made
  from the timeline cannot hold them;
* raises :attr:`SecretInput.active` on the call's :class:`~voiceivr.call.media.MediaChannel`, which the recorder
  reads on the media clock (it records silence for the caller instead of their voice) and on the SIP thread (a
  key press is recorded without its digit);
* notes, key by key, which presses it treated as secret (:meth:`SecretInput.key_handled`), so a key the caller
  typed ahead -- it reached the SIP thread a moment before the session began listening for the PIN -- is still
  stripped from the recording's JSON, which is written when the call ends.

``*`` and ``#`` stay readable: they end an entry or navigate, never carry a secret, and a replay needs them.
"""

from __future__ import annotations

import threading

MASK = "[secret]"  # what a turn row or a printed timeline shows instead of a secret input
CONTROL_KEYS = frozenset("*#")


def hides(digit: str) -> bool:
    """Is this key press content (masked during secret input) rather than a terminator or navigation key?"""
    return digit not in CONTROL_KEYS


class SecretInput:
    """One call's secret-input state, shared by the thread that decides it and the threads that record.

    The call's worker sets :attr:`active`; the media clock and the SIP thread only read it (a plain attribute:
    one read per frame, no lock on the media thread). Key verdicts are appended by the worker in the order the
    session handled the keys, which is the order the SIP thread received them.
    """

    __slots__ = ("_lock", "_verdicts", "active")

    def __init__(self) -> None:
        self.active = False
        self._verdicts: list[bool] = []
        self._lock = threading.Lock()

    def key_handled(self, secret: bool) -> None:
        """The session handled the next key press of the call; ``secret``: it kept no trace of its digit."""
        with self._lock:
            self._verdicts.append(secret)

    def key_was_secret(self, index: int) -> bool:
        """Did the session treat the ``index``-th key press of the call (from 0) as secret? False if unknown."""
        with self._lock:
            return index < len(self._verdicts) and self._verdicts[index]
