"""A dialplan's ``schedules:``: business hours per weekday (overnight ranges, overlaps), holidays with their
own hours and message, and the emergency switch, read with :mod:`voiceivr.dialplan.hours` and reported at
their ``file:line:col``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from voiceivr.dialplan import hours
from voiceivr.dialplan.model import Emergency, Holiday, PromptSpec, Schedule, TimeRange
from voiceivr.dialplan.schema import EMERGENCY, HOLIDAY, SCHEDULE
from voiceivr.dialplan.typed import Skip, TypedReader
from voiceivr.yamlpos import Mark, MDict, MList

_MONTH_DAY = re.compile(r"^\s*(\d{1,2})-(\d{1,2})\s*$")
_REPORTED = (0, 0)


class ScheduleBuilder(TypedReader):
    """Builds ``schedules:`` into :class:`~voiceivr.dialplan.model.Schedule` objects."""

    def build_schedules(self, doc: MDict, vars_: Mapping[str, str]) -> dict[str, Schedule]:
        raw = self.mapping(doc, "schedules", "the dialplan")
        out: dict[str, Schedule] = {}
        if raw is None:
            return out
        for name, v in raw.items():
            try:
                out[name] = self.build_schedule(name, v, raw, vars_)
            except Skip:
                pass
        return out

    def build_schedule(self, name: str, v: Any, parent: MDict, vars_: Mapping[str, str]) -> Schedule:
        where = f"schedules.{name}"
        v = self.named_entry(parent, name, where, "schedule", "timezone: and open:")
        self.keys(v, SCHEDULE.names, where)
        zone = self.string(v, "timezone", where, required=True)
        if zone is None:
            raise Skip
        try:
            hours.ZoneInfo(zone)
        except (KeyError, ValueError, OSError):  # not found is a KeyError; "../x" a ValueError
            self.err(v.value_mark("timezone"), f"{where}.timezone: unknown time zone {zone!r}; use an IANA name "
                                               "such as America/New_York, Europe/London or UTC")
            raise Skip from None
        week = self.build_week(v, where)
        holidays, yearly = self.build_holidays(v, where, vars_)
        emergency = self.build_emergency(v, where, vars_)
        return Schedule(name=name, timezone=zone, week=week, holidays=holidays, emergency=emergency, yearly=yearly)

    def time_ranges(self, v: Any, mark: Mark, where: str, overnight: bool) -> tuple[TimeRange, ...]:
        """``"09:00-17:00"``, a list of those, or ``closed``."""
        if v == "closed" or v is None:
            return ()
        items = [(v, mark)] if isinstance(v, str) else \
            [(item, v.item_mark(i)) for i, item in enumerate(v)] if isinstance(v, MList) else None
        if items is None:
            self.err(mark, f"{where} must be a range such as \"09:00-17:00\", a list of them, or closed")
            return ()
        out = []
        for item, imark in items:
            try:
                if not isinstance(item, str):
                    raise hours.BadHours(f"{item!r} is not a time range; write it in quotes as \"09:00-17:00\"")
                out.append(hours.parse_range(item, overnight=overnight))
            except hours.BadHours as exc:
                self.err(imark, f"{where}: {exc}")
        return tuple(sorted(out))

    def build_week(self, v: MDict, where: str) -> tuple[tuple[TimeRange, ...], ...]:
        raw = self.mapping(v, "open", where)
        week: list[tuple[TimeRange, ...]] = [()] * 7
        if raw is None:
            return tuple(week)
        named: dict[int, str] = {}
        marks: dict[int, Mark] = {}
        for key, ranges in raw.items():
            try:
                days = hours.parse_days(str(key))
            except hours.BadHours as exc:
                self.err(raw.key_mark(key), f"{where}.open: {exc}")
                continue
            parsed = self.time_ranges(ranges, raw.value_mark(key), f"{where}.open.{key}", overnight=True)
            for day in days:
                if day in named:
                    self.err(raw.key_mark(key), f"{where}.open: {hours.WEEKDAYS[day]} is given twice ({named[day]} "
                                                f"and {key}); give each day once")
                    continue
                named[day] = str(key)
                marks[day] = raw.value_mark(key)
                week[day] = parsed
        for d1, r1, d2, r2 in hours.overlaps(tuple(week)):
            self.err(marks[d2], f"{where}.open: {hours.WEEKDAYS[d2]} {r2} overlaps {hours.WEEKDAYS[d1]} {r1}; "
                                "join them into one range")
        return tuple(week)

    def build_holidays(self, v: MDict, where: str, vars_: Mapping[str, str]
                       ) -> tuple[dict[dt.date, Holiday], dict[tuple[int, int], Holiday]]:
        """The dated holidays (``date: 2026-12-24``) and the yearly ones (``date: 12-25``, every year)."""
        dated: dict[dt.date, Holiday] = {}
        yearly: dict[tuple[int, int], Holiday] = {}
        if "holidays" not in v or v["holidays"] is None:
            return dated, yearly
        raw = v["holidays"]
        if not isinstance(raw, MList):
            self.err(v.value_mark("holidays"), f"{where}.holidays must be a list of {{date:, name:}}")
            return dated, yearly
        for i, h in enumerate(raw):
            w = f"{where}.holidays[{i}]"
            if not isinstance(h, MDict):
                self.err(raw.item_mark(i), f"{w} must be a mapping with date: and name:")
                continue
            self.keys(h, HOLIDAY.names, w)
            month_day = self.month_day(h, w)
            day = None if month_day is not None else self.date(h, "date", w)
            name = self.string(h, "name", w, required=True) or ""
            ranges = self.time_ranges(h.get("open"), h.value_mark("open"), f"{w}.open", overnight=False)
            for _, r1, _, r2 in hours.overlaps((ranges, (), (), (), (), (), ())):
                self.err(h.value_mark("open"), f"{w}.open: {r2} overlaps {r1}; join them into one range")
            say = self.schedule_prompt(h, w, vars_)
            if month_day == _REPORTED:
                continue
            if month_day is not None:
                if month_day in yearly:
                    self.err(h.value_mark("date"), f"{w}: {month_day[0]:02d}-{month_day[1]:02d} is already a "
                                                   f"yearly holiday ({yearly[month_day].name})")
                    continue
                yearly[month_day] = Holiday(date=dt.date(2000, *month_day), name=name, hours=ranges, say=say,
                                            yearly=True)
                continue
            if day is None:
                continue
            if day in dated:
                self.err(h.value_mark("date"), f"{w}: {day.isoformat()} is already a holiday ({dated[day].name})")
                continue
            dated[day] = Holiday(date=day, name=name, hours=ranges, say=say)
        return dated, yearly

    def month_day(self, h: MDict, where: str) -> tuple[int, int] | None:
        """``date: 12-25`` (a string ``MM-DD``): a holiday every year; None for anything else (a full date);
        ``_REPORTED`` for an MM-DD that is no day of any year (the problem is reported here)."""
        text = h.get("date")
        if not isinstance(text, str):
            return None
        m = _MONTH_DAY.match(text)
        if m is None:
            return None
        month, day = int(m.group(1)), int(m.group(2))
        try:
            dt.date(2000, month, day)  # a leap year: 02-29 is a day of some years
        except ValueError:
            self.err(h.value_mark("date"), f"{where}.date: {text.strip()!r} is not a day of the year; write a "
                                           "yearly holiday as MM-DD, e.g. 12-25")
            return _REPORTED
        return month, day

    def build_emergency(self, v: MDict, where: str, vars_: Mapping[str, str]) -> Emergency:
        raw = v.get("emergency")
        if raw is None:
            return Emergency()
        if isinstance(raw, bool):
            return Emergency(active=raw)
        w = f"{where}.emergency"
        if not isinstance(raw, MDict):
            self.err(v.value_mark("emergency"), f"{w} must be true, false, or a mapping with active:, say:, goto:")
            return Emergency()
        self.keys(raw, EMERGENCY.names, w)
        if "active" not in raw:
            self.err(raw.mark, f"{w} needs active: true or false (the switch an admin flips)")
        return Emergency(active=self.boolean(raw, "active", w, False), say=self.schedule_prompt(raw, w, vars_),
                               goto=self.string(raw, "goto", w))

    def schedule_prompt(self, d: MDict, where: str, vars_: Mapping[str, str]) -> PromptSpec | None:
        """A holiday's or an emergency's own message: it may use vars: only (no slot is certain at a branch)."""
        said = self.prompts(d, "say", where)
        for p, mark in said:
            for var, fld in p.variables():
                if var not in vars_ or fld:
                    shown = f"{{{var}.{fld}}}" if fld else f"{{{var}}}"
                    self.err(self.var_mark(mark, shown), f"{where}.say uses {shown}; here only vars: are defined "
                                                         f"({', '.join(sorted(vars_)) or 'none'})")
        return said[0][0] if said else None
