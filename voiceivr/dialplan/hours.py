"""Business hours, holidays and an emergency override: what a dialplan's ``schedules:`` say at a given moment.

A schedule is evaluated in the order contact-centre admins know from Genesys Architect's schedule groups:
emergency -> holiday -> closed -> open. The moment is an aware datetime (the call's start, injected into the
engine, so replays and ``dialplan simulate --today`` give the same answer every time); it is turned into the
schedule's own wall-clock time with :mod:`zoneinfo`, so a daylight-saving change moves the hours with the
clock on the wall, as callers expect.

Ranges are minutes after the local midnight of the day they open on; an overnight range ("22:00-02:00")
ends after 24:00 and covers the small hours of the next day -- unless that next day is a holiday, whose
own hours replace everything on its date.

The schedule's data (:class:`Schedule`, :class:`TimeRange`, ...) lives with the rest of the dialplan's types in
:mod:`voiceivr.dialplan.model`; this module reads them and reads what admins write.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from voiceivr.dialplan.model import DAY, Holiday, Schedule, ScheduleState, TimeRange

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class BadHours(ValueError):
    """A range or day name an admin wrote that cannot be read; the message says what to write instead."""


@dataclass(frozen=True)
class Reading:
    """What a schedule says at one moment, and why (for the trace)."""

    state: ScheduleState
    local: dt.datetime
    holiday: Holiday | None = None


def state_at(schedule: Schedule, moment: dt.datetime) -> Reading:
    if moment.tzinfo is None:
        raise ValueError("a schedule is read at an aware datetime (a naive one has no time zone to convert from)")
    local = moment.astimezone(ZoneInfo(schedule.timezone))
    if schedule.emergency.active:
        return Reading("emergency", local)
    day = local.date()
    minute = local.hour * 60 + local.minute
    holiday = schedule.holiday_on(day)
    if holiday is not None:
        state: ScheduleState = "open" if _within(holiday.hours, minute) else "holiday"
        return Reading(state, local, holiday)
    today = schedule.week[day.weekday()]
    yesterday = day - dt.timedelta(days=1)
    # Last night's overnight ranges reach into today, unless yesterday was a holiday (its hours replaced them).
    spill = () if schedule.holiday_on(yesterday) is not None else schedule.week[yesterday.weekday()]
    is_open = _within(today, minute) or _within(spill, minute + DAY)
    return Reading("open" if is_open else "closed", local)


def _within(ranges: tuple[TimeRange, ...], minute: int) -> bool:
    return any(r.start <= minute < r.end for r in ranges)


# --- reading what admins write -------------------------------------------------------------------------


def parse_range(text: str, *, overnight: bool = True) -> TimeRange:
    """``"09:00-17:00"``; ``"22:00-02:00"`` runs overnight; ``"00:00-24:00"`` is the whole day."""
    m = _RANGE_RE.match(text)
    if m is None:
        raise BadHours(f"{text!r} is not a time range; write it as \"09:00-17:00\" (24-hour clock)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if h > 24 or mi > 59 or (h == 24 and mi):
            raise BadHours(f"{text!r}: {h:02d}:{mi:02d} is not a time of day (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == DAY:
        raise BadHours(f"{text!r} opens at 24:00; write 00:00 on the next day")
    if start == end:
        raise BadHours(f"{text!r} opens and closes at the same time; leave the day out to be closed")
    if end < start:
        if not overnight:
            raise BadHours(f"{text!r} runs past midnight, which a holiday's hours cannot (they cover its date only)")
        end += DAY
    return TimeRange(start, end)


def parse_days(text: str) -> tuple[int, ...]:
    """``"mon"`` or ``"mon-fri"`` (``"fri-mon"`` wraps over the weekend) as weekday numbers, Monday 0."""
    names = [p.strip().lower() for p in text.split("-")]
    if len(names) not in (1, 2) or any(n not in WEEKDAYS for n in names):
        raise BadHours(f"{text!r} is not a day; write one of {', '.join(WEEKDAYS)} or a span such as mon-fri")
    first = WEEKDAYS.index(names[0])
    last = WEEKDAYS.index(names[-1])
    return tuple((first + i) % 7 for i in range((last - first) % 7 + 1))


def overlaps(week: tuple[tuple[TimeRange, ...], ...]) -> list[tuple[int, TimeRange, int, TimeRange]]:
    """Pairs of ranges (day, range, day, range) that share a minute, overnight spills and Sunday->Monday included."""
    flat = sorted((day * DAY + r.start, day * DAY + r.end, day, r) for day in range(7) for r in week[day])
    week_len = 7 * DAY
    out = []
    for i, (s1, e1, d1, r1) in enumerate(flat):
        for s2, e2, d2, r2 in flat[i + 1:]:
            if s2 < e1 or (e1 > week_len and s2 + week_len < e1) or (e2 > week_len and s1 + week_len < e2):
                out.append((d1, r1, d2, r2))
    return out

