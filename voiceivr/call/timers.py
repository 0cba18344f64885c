"""The call's timers: no-input, idle (sleep, then hang up), inter-digit, and the call limits.

:class:`Timers` keeps the clocks and, once a tick, says which one ran out (:meth:`Timers.check`) as a small
typed decision; the session (:mod:`voiceivr.call.session`) carries it out (a reprompt from the brain, a
goodbye, the end of the call). The no-progress and max-duration limits themselves are
:class:`~voiceivr.call.limits.CallLimits`. Time is the session's media clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.call.limits import CallLimits, LimitEnd
from voiceivr.settings import CallSettings


@dataclass(frozen=True)
class LimitDue:
    """A limit ran out: say its goodbye and hang up."""

    end: LimitEnd


@dataclass(frozen=True)
class GoodbyeOverdue:
    """The goodbye of a fired limit has not finished in time: hang up now."""

    end: LimitEnd


@dataclass(frozen=True)
class DigitsTimedOut:
    """The entry in progress got no key for its inter-digit timeout."""


@dataclass(frozen=True)
class IdleDue:
    """The caller has been silent for call.idle_hangup_s: say goodbye (once) and hang up."""

    idle_s: float


@dataclass(frozen=True)
class FallAsleep:
    """The caller has been silent for call.idle_sleep_s: only the VAD listens now."""


@dataclass(frozen=True)
class NoInputDue:
    """Nothing came after the prompts played: the brain reprompts (the ``count``-th time in a row)."""

    count: int


TimerDecision = LimitDue | GoodbyeOverdue | DigitsTimedOut | IdleDue | FallAsleep | NoInputDue


class Timers:
    """The timers of one call. Owned by the session's thread."""

    def __init__(self, settings: CallSettings) -> None:
        self.s = settings
        self.limits = CallLimits(settings)
        self.no_input_deadline: float | None = None
        self.no_input_count = 0
        self.last_activity = 0.0
        self.sleeping = False

    def caller_active(self, now: float) -> None:
        """The caller spoke or keyed: the idle clock restarts and the call wakes."""
        self.last_activity = now
        self.sleeping = False

    def listen_from(self, now: float, no_input_timeout_s: float) -> None:
        """The prompts have played: the no-input clock starts."""
        self.no_input_deadline = now + no_input_timeout_s

    def check(self, now: float, *, busy: bool, digits_timed_out: bool) -> TimerDecision | None:
        """Which timer ran out at ``now`` (``busy``: a prompt plays, the caller speaks or keys an entry)."""
        end = self.limits.due(now)
        if end is not None:
            return LimitDue(end)
        if self.limits.fired is not None:
            if self.limits.overdue(now):
                return GoodbyeOverdue(self.limits.fired)
            return None
        if digits_timed_out:
            return DigitsTimedOut()
        idle = now - self.last_activity
        if not busy and idle >= self.s.idle_hangup_s:
            self.last_activity = now  # say goodbye once
            return IdleDue(idle)
        if not busy and not self.sleeping and idle >= self.s.idle_sleep_s:
            self.sleeping = True
            self.no_input_deadline = None
            return FallAsleep()
        if self.no_input_deadline is not None and not busy and not self.sleeping and now >= self.no_input_deadline:
            self.no_input_deadline = None
            self.no_input_count += 1
            return NoInputDue(self.no_input_count)
        return None
