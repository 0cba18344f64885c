"""DTMF collection: the keys of one entry, until its terminator, its maximum length or its inter-digit timeout.

:class:`DigitCollector` keeps the entry in progress and says when it is complete; the session
(:mod:`voiceivr.call.session`) decides whether a key is an entry at all (barge-in, an uninterruptible prompt,
a call that is ending), puts the result on the timeline and gives it to the brain.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.dialplan.io import DtmfSpec


@dataclass(frozen=True)
class Entry:
    """A finished entry."""

    digits: str
    reason: str  # single | terminator | max_length | timeout
    started_at: float
    secret: bool  # begun during secret input


class DigitCollector:
    """The keypad entry of one call. Owned by the session's thread."""

    def __init__(self) -> None:
        self.digits = ""
        self._started: float | None = None
        self._secret = False  # the entry in progress began during secret input
        self._last_digit_at = 0.0
        self._swallow_terminator_until = -1.0
        self._swallow_terminator = ""

    @property
    def secret(self) -> bool:
        """The entry in progress began during secret input."""
        return self._secret

    def swallows(self, digit: str, now: float) -> bool:
        """Is this key the # after an entry that was already complete? (Any other key ends that grace.)

        The caller pressed # after an entry that was already complete (max length): that is how people finish
        keying, not a new input, and it must not cut the prompt that answers the entry.
        """
        if digit == self._swallow_terminator and now <= self._swallow_terminator_until and not self.digits:
            self._swallow_terminator_until = -1.0
            return True
        self._swallow_terminator_until = -1.0  # any other key ends the entry's grace period
        return False

    def key(self, digit: str, spec: DtmfSpec, now: float, secret: bool) -> Entry | None:
        """A key of an entry (``secret``: the brain listens for a secret). The entry, if this key ends it."""
        if spec.single_key:
            return self.done(digit, "single", now, secret)
        if digit == spec.terminator:
            return self.done(self.digits, "terminator", now, secret)
        if not self.digits:
            self._started = now
            self._secret = secret
        self.digits += digit
        self._last_digit_at = now
        if len(self.digits) >= spec.max_digits:
            if spec.terminator:
                self._swallow_terminator = spec.terminator
                self._swallow_terminator_until = now + spec.inter_digit_timeout_s
            return self.done(self.digits, "max_length", now, secret)
        return None

    def timed_out(self, spec: DtmfSpec, now: float) -> bool:
        return bool(self.digits) and now - self._last_digit_at >= spec.inter_digit_timeout_s

    def done(self, digits: str, reason: str, now: float, secret: bool) -> Entry:
        started = self._started if self._started is not None else now
        entry = Entry(digits, reason, started, self._secret or secret)
        self.digits = ""
        self._started = None
        self._secret = False
        return entry

    def clear(self) -> None:
        self.digits = ""
