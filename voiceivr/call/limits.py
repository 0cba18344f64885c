"""How long one call may last, and how long it may go nowhere.

Three limits end a call politely, each with a reason that goes on the record (the call's ``CallEnded`` event,
the hang-up reason in the recording and the edge's summary) and into ``/metrics``:

* **idle** (``call.idle_hangup_s``, the session's own timer): caller silence. Any speech or key restarts it,
  which is right for silence and is why it cannot stop the next one.
* **no progress** (``call.no_progress_hangup_s``): the time since the conversation last moved on. A ``*``
  (repeat) every 45 s held a line for 900 s: each press was activity, so the idle timer never ran out, yet
  the call never got anywhere. What counts here is not that the caller did something but what the answer
  was: the clock restarts only when the call says something it has not said before. A repeat, a reprompt
  or a return to a menu already heard is no progress; a new question, a read-back or an answer is. A real
  slow caller who is getting somewhere is therefore never cut off, however long they take between steps
  (caller silence is the idle limit's business).
* **max duration** (``call.max_duration_s``): the hard cap, whatever happens; it cuts whatever is playing.

When one of the last two runs out the session stops listening, tells the brain the call is over (pending
safe-path requests are void), says the limit's goodbye as an uninterruptible prompt -- so no key can cancel
the hang-up that follows -- and hangs up. Time is the session's media clock, so replays and tests see the
same endings as live calls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from voiceivr.settings import CallSettings

# Hang-up reasons, as the edge records them and the session's CallEnded event carries them.
IDLE_REASON = "caller idle"
NO_PROGRESS_REASON = "no progress"
MAX_DURATION_REASON = "max call duration"
LIMIT_OF_REASON = {IDLE_REASON: "idle", NO_PROGRESS_REASON: "no_progress", MAX_DURATION_REASON: "max_duration"}
# A goodbye that has not finished playing this long after its limit ran out (no caller audio arrives to
# drive playback, say) no longer delays the hang-up.
GOODBYE_GRACE_S = 20.0


@dataclass(frozen=True)
class LimitEnd:
    """A limit that ran out: what to say, and how the call ends."""

    kind: str  # no_progress | max_duration
    reason: str
    goodbye: str
    outcome: str
    at: float


class CallLimits:
    """The no-progress and max-duration clocks of one call. Owned by the session's thread."""

    def __init__(self, settings: CallSettings) -> None:
        self._settings = settings
        self._said: set[bytes] = set()  # digests of what the call has said (no prompt text is kept here)
        self.last_progress = 0.0
        self.fired: LimitEnd | None = None

    def said(self, text: str, now: float) -> bool:
        """The conversation queued a prompt: progress if this call has not said it before."""
        key = hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()
        if key in self._said:
            return False
        self._said.add(key)
        self.last_progress = now
        return True

    def due(self, now: float) -> LimitEnd | None:
        """The limit that runs out at ``now``, once; None while both have time left (or one already fired)."""
        if self.fired is not None:
            return None
        s = self._settings
        if s.max_duration_s > 0 and now >= s.max_duration_s:
            self.fired = LimitEnd("max_duration", MAX_DURATION_REASON, s.max_duration_goodbye, "time_limit", now)
        elif s.no_progress_hangup_s > 0 and now - self.last_progress >= s.no_progress_hangup_s:
            self.fired = LimitEnd("no_progress", NO_PROGRESS_REASON, s.no_progress_goodbye, "no_progress", now)
        return self.fired

    def overdue(self, now: float) -> bool:
        """The goodbye of a fired limit should have finished by now: hang up without waiting for it."""
        return self.fired is not None and now - self.fired.at >= GOODBYE_GRACE_S
