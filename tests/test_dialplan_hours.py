"""Schedules: business hours, holidays and the emergency switch, from the evaluation to `dialplan simulate`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from voiceivr.cli import cli
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan import hours
from voiceivr.dialplan.hours import parse_range, state_at
from voiceivr.dialplan.loader import check_text, load_file
from voiceivr.dialplan.model import Emergency, Holiday, Schedule, TimeRange

ROOT = Path(__file__).resolve().parents[1]
HOURS_YAML = ROOT / "dialplans" / "hours.yaml"
NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def week(**days: str | list[str]) -> tuple[tuple[TimeRange, ...], ...]:
    out: list[tuple[TimeRange, ...]] = [()] * 7
    for key, ranges in days.items():
        for day in hours.parse_days(key.replace("_", "-")):
            out[day] = tuple(parse_range(r) for r in ([ranges] if isinstance(ranges, str) else ranges))
    return tuple(out)


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: dt.tzinfo = NY) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz)


OFFICE = Schedule("office", "America/New_York", week(mon_fri="09:00-17:00", sat=["09:00-12:00", "13:00-15:00"]))


# --- evaluation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "state"), [
    (at(2026, 12, 7, 8, 59), "closed"),  # Monday, a minute before opening
    (at(2026, 12, 7, 9, 0), "open"),  # opening minute counts
    (at(2026, 12, 7, 16, 59), "open"),
    (at(2026, 12, 7, 17, 0), "closed"),  # closing minute does not
    (at(2026, 12, 12, 12, 30), "closed"),  # Saturday lunch break between two ranges
    (at(2026, 12, 12, 13, 30), "open"),
    (at(2026, 12, 13, 10, 0), "closed"),  # Sunday: not listed
])
def test_weekly_hours(moment: dt.datetime, state: str) -> None:
    assert state_at(OFFICE, moment).state == state


def test_the_moment_is_read_in_the_schedules_zone() -> None:
    # 14:30 UTC on a Monday in December is 09:30 in New York (open) and 22:30 in Singapore.
    moment = dt.datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    assert state_at(OFFICE, moment).state == "open"
    assert state_at(OFFICE, moment).local.isoformat() == "2026-12-07T09:30:00-05:00"
    singapore = Schedule("sg", "Asia/Singapore", OFFICE.week)
    assert state_at(singapore, moment).state == "closed"


def test_dst_change_days_follow_the_wall_clock() -> None:
    # New York springs forward on 2026-03-08 and falls back on 2026-11-01: the same UTC instant is 08:30
    # local the day before and 09:30 on the day (and the reverse in November).
    daily = Schedule("daily", "America/New_York", week(mon_sun="09:00-17:00"))
    assert state_at(daily, dt.datetime(2026, 3, 7, 13, 30, tzinfo=UTC)).state == "closed"
    assert state_at(daily, dt.datetime(2026, 3, 8, 13, 30, tzinfo=UTC)).state == "open"
    assert state_at(daily, dt.datetime(2026, 10, 31, 21, 30, tzinfo=UTC)).state == "closed"  # 17:30 EDT
    assert state_at(daily, dt.datetime(2026, 11, 1, 21, 30, tzinfo=UTC)).state == "open"  # 16:30 EST
    # An overnight range across the changes: 01:30 happens twice on 1 November, open both times; on
    # 8 March 02:30 does not exist, 03:30 EDT is still inside 22:00-06:00.
    nights = Schedule("nights", "America/New_York", week(mon_sun="22:00-06:00"))
    assert state_at(nights, dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)).state == "open"  # 01:30 EDT
    assert state_at(nights, dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)).state == "open"  # 01:30 EST
    assert state_at(nights, dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)).local.hour == 3
    assert state_at(nights, dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)).state == "open"
    assert state_at(nights, dt.datetime(2026, 3, 8, 10, 30, tzinfo=UTC)).state == "closed"  # 06:30 EDT


def test_overnight_ranges_spill_into_the_next_day_and_over_the_week_end() -> None:
    late = Schedule("late", "Europe/London", week(fri="20:00-02:00", sun="22:00-01:30"))
    london = ZoneInfo("Europe/London")
    assert state_at(late, at(2026, 12, 11, 23, 0, london)).state == "open"  # Friday night
    assert state_at(late, at(2026, 12, 12, 1, 59, london)).state == "open"  # Saturday small hours
    assert state_at(late, at(2026, 12, 12, 2, 0, london)).state == "closed"
    assert state_at(late, at(2026, 12, 14, 1, 0, london)).state == "open"  # Sunday's range into Monday
    assert state_at(late, at(2026, 12, 14, 1, 30, london)).state == "closed"


def test_evaluation_agrees_with_a_minute_by_minute_table_of_the_week() -> None:
    # Random weeks of ranges (overnight ones included) that do not overlap, against the plain reading: the set
    # of open minutes of the week, a range's minutes past Sunday midnight wrapping to Monday.
    import random

    rng = random.Random(18)
    monday = dt.datetime(2026, 12, 7, tzinfo=UTC)
    kept = 0
    for _ in range(150):
        days: list[list[TimeRange]] = [[] for _ in range(7)]
        for _ in range(rng.randint(1, 10)):
            start = rng.randrange(0, hours.DAY, 15)
            days[rng.randrange(7)].append(TimeRange(start, start + rng.randrange(15, hours.DAY, 15)))
        the_week = tuple(tuple(sorted(d)) for d in days)
        if hours.overlaps(the_week):
            continue
        open_minutes = {(day * hours.DAY + m) % (7 * hours.DAY)
                        for day in range(7) for r in the_week[day] for m in range(r.start, r.end)}
        kept += 1
        sched = Schedule("r", "UTC", the_week)
        for minute in rng.sample(range(7 * hours.DAY), 300):
            state = state_at(sched, monday + dt.timedelta(minutes=minute)).state
            assert state == ("open" if minute in open_minutes else "closed"), (the_week, minute)
    assert kept >= 30  # the overlap filter left enough weeks to mean something


def test_a_holiday_replaces_the_days_hours() -> None:
    xmas = Holiday(dt.date(2026, 12, 25), "Christmas Day")
    eve = Holiday(dt.date(2026, 12, 24), "Christmas Eve", hours=(parse_range("09:00-12:00"),))
    sched = Schedule("office", OFFICE.timezone, OFFICE.week, holidays={xmas.date: xmas, eve.date: eve})
    reading = state_at(sched, at(2026, 12, 25, 10, 0))  # a Friday, normally open
    assert reading.state == "holiday" and reading.holiday == xmas
    assert state_at(sched, at(2026, 12, 24, 11, 59)).state == "open"  # reduced hours
    assert state_at(sched, at(2026, 12, 24, 12, 0)).state == "holiday"
    assert state_at(sched, at(2026, 12, 23, 12, 0)).state == "open"  # the day before is untouched


def test_a_holiday_also_stops_last_nights_range_and_its_own() -> None:
    nights = week(mon_sun="22:00-02:00")
    new_year = Holiday(dt.date(2027, 1, 1), "New Year's Day")
    sched = Schedule("nights", "UTC", nights, holidays={new_year.date: new_year})
    assert state_at(sched, at(2026, 12, 31, 23, 0, UTC)).state == "open"
    assert state_at(sched, at(2027, 1, 1, 1, 0, UTC)).state == "holiday"  # the holiday owns its date
    assert state_at(sched, at(2027, 1, 2, 1, 0, UTC)).state == "closed"  # its night never opened


def test_emergency_comes_first() -> None:
    xmas = Holiday(dt.date(2026, 12, 25), "Christmas Day")
    sched = Schedule("office", OFFICE.timezone, OFFICE.week, holidays={xmas.date: xmas},
                     emergency=Emergency(active=True))
    for moment in (at(2026, 12, 7, 10, 0), at(2026, 12, 25, 10, 0), at(2026, 12, 13, 10, 0)):
        assert state_at(sched, moment).state == "emergency"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        state_at(OFFICE, dt.datetime(2026, 12, 7, 10, 0))


@pytest.mark.parametrize(("text", "piece"), [
    ("25:00-26:00", "25:00 is not a time of day"),
    ("09:60-10:00", "09:60 is not a time of day"),
    ("24:30-10:00", "24:30 is not a time of day"),
    ("9-17", "is not a time range"),
    ("10:00-10:00", "opens and closes at the same time"),
])
def test_bad_ranges_say_what_to_write(text: str, piece: str) -> None:
    with pytest.raises(hours.BadHours, match=piece):
        parse_range(text)


def test_ranges_and_days() -> None:
    assert parse_range("22:00-02:00") == TimeRange(22 * 60, 26 * 60)
    assert parse_range("00:00-24:00") == TimeRange(0, 24 * 60)
    assert hours.parse_days("fri-mon") == (4, 5, 6, 0)
    with pytest.raises(hours.BadHours, match="runs past midnight"):
        parse_range("22:00-02:00", overnight=False)
    assert hours.overlaps(week(sun="22:00-03:00", mon="02:00-05:00"))  # across the end of the week
    assert not hours.overlaps(week(sun="22:00-02:00", mon="02:00-05:00"))


# --- the loader ---------------------------------------------------------------------------------------------

PLAN = """\
name: t
start: a
schedules:
  main:
    timezone: {zone}
    open:
      mon-fri: {weekdays}
      {extra_day}
    holidays:
      - {{date: {date}, name: Holiday}}
nodes:
  a:
    schedule: {{name: {schedule}, open: b, closed: {closed}}}
  b:
    end: hangup
"""


def problems_of(**over: str) -> list[str]:
    values = {"zone": "America/New_York", "weekdays": '"09:00-17:00"', "extra_day": "", "date": "2026-12-25",
              "schedule": "main", "closed": "b"} | over
    _, problems = check_text(PLAN.format(**values), "t.yaml", demo_registry())
    return [str(p) for p in problems]


def test_a_valid_schedule_loads() -> None:
    assert problems_of() == []


@pytest.mark.parametrize(("over", "expected"), [
    ({"zone": "Mars/Olympus_Mons"}, "t.yaml:5:15: schedules.main.timezone: unknown time zone 'Mars/Olympus_Mons'"),
    ({"weekdays": '"25:00-26:00"'}, "t.yaml:7:16: schedules.main.open.mon-fri: '25:00-26:00': 25:00 is not a time"),
    ({"weekdays": '["09:00-13:00", "12:00-17:00"]'},
     "t.yaml:7:16: schedules.main.open: mon 12:00-17:00 overlaps mon 09:00-13:00"),
    ({"extra_day": 'sat: "22:00-03:00"\n      sun: "02:00-04:00"'},
     "t.yaml:9:12: schedules.main.open: sun 02:00-04:00 overlaps sat 22:00-03:00"),
    ({"extra_day": 'fri: "10:00-12:00"'}, "t.yaml:8:7: schedules.main.open: fri is given twice (mon-fri and fri)"),
    ({"extra_day": 'funday: "10:00-12:00"'}, "t.yaml:8:7: schedules.main.open: 'funday' is not a day"),
    ({"date": "2026-12-32"}, "t.yaml:10:16: '2026-12-32' reads as a date but is not a valid one"),
    ({"date": "Christmas"}, "t.yaml:10:16: schedules.main.holidays[0].date: 'Christmas' is not a date"),
    ({"schedule": "mian"}, "t.yaml:13:22: node a.schedule: unknown schedule 'mian' (did you mean 'main'?)"),
    ({"closed": "nowhere"}, "t.yaml:13:45: node a.schedule.closed: unknown node 'nowhere'"),
])
def test_loader_errors_point_at_the_value(over: dict[str, str], expected: str) -> None:
    found = problems_of(**over)
    assert any(p.startswith(expected) for p in found), found


def test_an_impossible_date_is_reported_once() -> None:
    assert len(problems_of(date="2026-12-32")) == 1
    assert problems_of(date="") == ["t.yaml:10:9: schedules.main.holidays[0] needs date:"]


def test_a_schedule_node_cannot_also_go_elsewhere_and_its_messages_use_vars_only() -> None:
    text = PLAN.format(zone="UTC", weekdays='"09:00-17:00"', extra_day="", date="2026-12-25", schedule="main",
                       closed="b").replace("    schedule:", "    goto: b\n    schedule:")
    text = text.replace("name: Holiday}", 'name: Holiday, say: "Shut {x}."}')
    _, problems = check_text(text, "t.yaml", demo_registry())
    found = [str(p) for p in problems]
    assert any(p.startswith("t.yaml:14:5: node a: schedule: chooses where to go") for p in found), found
    assert any(p.startswith("t.yaml:10:54: schedules.main.holidays[0].say uses {x}") for p in found), found


def test_the_emergency_goto_is_checked_where_it_is_written_and_used_where_no_node_says() -> None:
    text = PLAN.format(zone="UTC", weekdays='"09:00-17:00"', extra_day="", date="2026-12-25", schedule="main",
                       closed="b")
    text = text.replace("    holidays:", "    emergency: {active: true, goto: $agent}\n    holidays:")
    plan, problems = check_text(text + "agent: {target: 'sip:a@b'}\n", "t.yaml", demo_registry())
    assert plan is not None, problems
    node = plan.nodes["a"].schedule
    assert node is not None and node.target("emergency") == "$agent" and node.target("holiday") == "b"
    _, problems = check_text(text.replace("goto: $agent", "goto: c"), "t.yaml", demo_registry())
    assert [str(p) for p in problems] == [
        "t.yaml:9:37: schedules.main.emergency.goto: unknown node 'c' (or one of $agent, $goodbye, $return)"]


def test_the_shipped_example_and_its_typed_objects() -> None:
    plan = load_file(HOURS_YAML, demo_registry())
    sched = plan.schedules["contact_centre"]
    assert sched.timezone == "America/New_York" and not sched.emergency.active
    assert sched.week[5] == (parse_range("09:00-13:00"), parse_range("14:00-17:00")) and sched.week[6] == ()
    assert sched.holidays[dt.date(2026, 12, 24)].hours == (parse_range("08:00-12:00"),)
    branch = plan.nodes["welcome"].schedule
    assert branch is not None and branch.target("emergency") == "closed" and branch.target("open") == "open_menu"


# --- the engine, through `voiceivr dialplan simulate` -------------------------------------------------------


@pytest.fixture
def runner(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("VOICEIVR_DIALPLAN_TIERS", "0,1")
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "demo")
    return CliRunner()


def simulate(runner: CliRunner, path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = runner.invoke(cli, ["dialplan", "simulate", str(path), "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def branch_taken(trace: dict) -> tuple[str, str, list[str]]:  # type: ignore[type-arg]
    events = trace["events"]
    sched = next(e for e in events if e["event"] == "schedule")
    to = [e["to"] for e in events if e["event"] == "transition"]
    return sched["state"], to[1], [e["text"] for e in events if e["event"] == "say"]


@pytest.mark.parametrize(("args", "state", "node"), [
    (["--today", "2026-12-22T10:00", "--tz", "America/New_York"], "open", "open_menu"),  # a Tuesday
    (["--today", "2026-12-22T20:00", "--tz", "America/New_York"], "closed", "closed"),
    (["--today", "2026-12-23T00:30+00:00"], "open", "open_menu"),  # 19:30 in New York
    (["--today", "2026-12-24T11:00-05:00"], "open", "open_menu"),  # Christmas Eve, reduced hours
    (["--today", "2026-12-24T12:30-05:00"], "holiday", "closed"),
    (["--today", "2026-12-25"], "holiday", "closed"),  # a date alone is read at 12:00
    (["--today", "2026-12-27T10:00", "--tz", "America/New_York"], "closed", "closed"),  # Sunday
])
def test_simulate_takes_the_branch_for_the_calls_start(runner: CliRunner, args: list[str], state: str,
                                                       node: str) -> None:
    got_state, got_node, said = branch_taken(simulate(runner, HOURS_YAML, *args))
    assert (got_state, got_node) == (state, node)
    assert ("We're closed today for Christmas Day." in said) == (args[1] == "2026-12-25")


def test_publishing_emergency_true_overrides_everything(runner: CliRunner, tmp_path: Path) -> None:
    flipped = tmp_path / "hours.yaml"
    flipped.write_text(HOURS_YAML.read_text().replace("active: false", "active: true"))
    for when in ("2026-12-22T10:00-05:00", "2026-12-25T10:00-05:00"):
        state, node, said = branch_taken(simulate(runner, flipped, "--today", when))
        assert (state, node) == ("emergency", "closed")
        assert "Because of severe weather our contact centre is closed today." in said


def test_simulate_refuses_a_bad_time_or_zone(runner: CliRunner) -> None:
    bad = runner.invoke(cli, ["dialplan", "simulate", str(HOURS_YAML), "--today", "2026-12-25T25:00"])
    assert bad.exit_code == 2 and "is not a date" in bad.output
    zone = runner.invoke(cli, ["dialplan", "simulate", str(HOURS_YAML), "--today", "2026-12-25", "--tz", "Nowhere"])
    assert zone.exit_code == 2 and "unknown time zone 'Nowhere'" in zone.output


# --- yearly holidays (date: MM-DD) ----------------------------------------------------------------------


def _yearly(month: int, day: int, name: str, *ranges: str) -> Holiday:
    return Holiday(dt.date(2000, month, day), name, hours=tuple(parse_range(r, overnight=False) for r in ranges),
                   yearly=True)


def test_a_yearly_holiday_falls_every_year_and_a_dated_one_comes_first() -> None:
    xmas = _yearly(12, 25, "Christmas Day")
    eve_2027 = Holiday(dt.date(2027, 12, 25), "Christmas (short day)", hours=(parse_range("09:00-12:00"),))
    sched = Schedule("office", OFFICE.timezone, OFFICE.week, holidays={eve_2027.date: eve_2027},
                     yearly={(12, 25): xmas})
    for year in (2026, 2030, 2031):  # a Friday, a Wednesday, a Thursday: all open days otherwise
        reading = state_at(sched, at(year, 12, 25, 10, 0))
        assert reading.state == "holiday" and reading.holiday == xmas
        assert state_at(sched, at(year, 12, 24, 10, 0)).state == "open"
    assert state_at(sched, at(2027, 12, 25, 10, 0)).holiday == eve_2027  # that year's own entry wins
    assert state_at(sched, at(2027, 12, 25, 10, 0)).state == "open"


def test_a_yearly_29_february_is_a_holiday_in_leap_years_only() -> None:
    leap = _yearly(2, 29, "Leap Day")
    sched = Schedule("daily", "UTC", week(mon_sun="09:00-17:00"), yearly={(2, 29): leap})
    assert state_at(sched, at(2028, 2, 29, 10, 0, UTC)).state == "holiday"
    assert state_at(sched, at(2032, 2, 29, 10, 0, UTC)).holiday == leap
    for day in (dt.date(2027, 2, 28), dt.date(2027, 3, 1), dt.date(2028, 2, 28), dt.date(2028, 3, 1)):
        assert state_at(sched, at(day.year, day.month, day.day, 10, 0, UTC)).state == "open", day
    assert state_at(sched, at(2100, 3, 1, 10, 0, UTC)).state == "open"  # 2100 is not a leap year


def test_a_yearly_holiday_on_a_dst_change_owns_its_whole_local_day() -> None:
    # New York springs forward on 2026-03-08 (a 23-hour day) and falls back on 2026-11-01 (25 hours). A yearly
    # holiday on those dates starts and ends at local midnight, and stops the night range from the day before.
    nights = week(mon_sun="22:00-03:00")
    sched = Schedule("nights", "America/New_York", nights,
                     yearly={(3, 8): _yearly(3, 8, "Spring"), (11, 1): _yearly(11, 1, "Autumn", "20:00-23:00")})
    utc = dt.UTC
    assert state_at(sched, dt.datetime(2026, 3, 8, 4, 59, tzinfo=utc)).state == "open"  # 23:59 EST on the 7th
    assert state_at(sched, dt.datetime(2026, 3, 8, 5, 0, tzinfo=utc)).state == "holiday"  # 00:00 EST
    assert state_at(sched, dt.datetime(2026, 3, 8, 7, 30, tzinfo=utc)).local.hour == 3  # 03:30 EDT
    assert state_at(sched, dt.datetime(2026, 3, 8, 7, 30, tzinfo=utc)).state == "holiday"
    assert state_at(sched, dt.datetime(2026, 3, 9, 3, 59, tzinfo=utc)).state == "holiday"  # 23:59 EDT
    assert state_at(sched, dt.datetime(2026, 3, 9, 4, 0, tzinfo=utc)).state == "closed"  # its night never opened
    # 1 November: 01:30 comes twice, a holiday both times; its own hours are on the wall clock (20:00 EST).
    assert state_at(sched, dt.datetime(2026, 11, 1, 5, 30, tzinfo=utc)).state == "holiday"  # 01:30 EDT
    assert state_at(sched, dt.datetime(2026, 11, 1, 6, 30, tzinfo=utc)).state == "holiday"  # 01:30 EST
    assert state_at(sched, dt.datetime(2026, 11, 2, 1, 0, tzinfo=utc)).state == "open"  # 20:00 EST
    assert state_at(sched, dt.datetime(2026, 11, 2, 4, 0, tzinfo=utc)).state == "holiday"  # 23:00 EST
    assert state_at(sched, dt.datetime(2026, 11, 2, 5, 30, tzinfo=utc)).state == "closed"  # 00:30 on the 2nd
    assert state_at(sched, dt.datetime(2027, 3, 8, 6, 0, tzinfo=utc)).state == "holiday"  # every year


def test_the_loader_reads_yearly_dates_and_points_at_bad_ones() -> None:
    text = PLAN.format(zone="UTC", weekdays='"09:00-17:00"', extra_day="", date="12-25", schedule="main",
                       closed="b")
    text = text.replace("      - {date: 12-25, name: Holiday}",
                        "      - {date: 12-25, name: Holiday}\n"
                        "      - {date: 2026-12-25, name: This year, open: \"09:00-12:00\"}\n"
                        "      - {date: \"02-29\", name: Leap Day}")
    plan, problems = check_text(text, "t.yaml", demo_registry())
    assert plan is not None, [str(p) for p in problems]
    sched = plan.schedules["main"]
    assert sched.yearly[(12, 25)].name == "Holiday" and sched.yearly[(12, 25)].yearly
    assert sched.yearly[(2, 29)].name == "Leap Day" and sched.holidays[dt.date(2026, 12, 25)].name == "This year"
    assert problems_of(date="13-01") == [
        "t.yaml:10:16: schedules.main.holidays[0].date: '13-01' is not a day of the year; write a yearly holiday "
        "as MM-DD, e.g. 12-25"]
    assert problems_of(date="02-30")[0].startswith("t.yaml:10:16: schedules.main.holidays[0].date: '02-30' is not")
    twice = PLAN.format(zone="UTC", weekdays='"09:00-17:00"', extra_day="", date="12-25", schedule="main",
                        closed="b").replace("name: Holiday}", "name: Holiday}\n      - {date: 12-25, name: Again}")
    assert [str(p) for p in check_text(twice, "t.yaml", demo_registry())[1]] == [
        "t.yaml:11:16: schedules.main.holidays[1]: 12-25 is already a yearly holiday (Holiday)"]


def test_simulate_takes_a_yearly_holiday_in_any_year(runner: CliRunner, tmp_path: Path) -> None:
    yearly = tmp_path / "hours.yaml"
    source = HOURS_YAML.read_text()
    assert "date: 2026-12-25" in source
    yearly.write_text(source.replace("date: 2026-12-25", "date: 12-25"))
    for when in ("2026-12-25", "2031-12-25"):
        state, node, said = branch_taken(simulate(runner, yearly, "--today", when))
        assert (state, node) == ("holiday", "closed") and "We're closed today for Christmas Day." in said
    assert branch_taken(simulate(runner, yearly, "--today", "2031-12-24T10:00-05:00"))[0] == "open"
