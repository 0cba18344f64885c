"""The console over real HTTP (uvicorn on 127.0.0.1, requests as the client) on SQLite and PostgreSQL:
sign-in, sessions, CSRF, throttling, roles, size limits, escaping, publish and rollback with their audit rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.console import (
    BANK,
    PASSWORDS,
    RunningConsole,
    login_token,
    page_csrf,
    running_console,
    seed,
    sign_in,
)
from voiceivr.audit.chain import AuditTrail
from voiceivr.console.accounts import AccountError, Throttle, add_user
from voiceivr.dialplan.store import list_versions


@pytest.fixture
def console(migrated_engine: Engine) -> Iterator[RunningConsole]:
    seed(migrated_engine)
    with running_console(migrated_engine) as running:
        yield running


def kinds(engine: Engine) -> list[str]:
    return [r.kind for r in AuditTrail(engine).rows()]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_sign_in_sets_a_strict_http_only_cookie_and_pages_need_it(console: RunningConsole) -> None:
    assert requests.get(f"{console.url}/dialplans", allow_redirects=False).headers["location"] == "/login"
    s, r = sign_in(console.url, "pat")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = s.get(f"{console.url}/dialplans")
    assert page.status_code == 200 and "bank" in page.text and "first version" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert PASSWORDS["pat"] not in page.text and "argon2" not in page.text
    assert "console.login" in kinds(console.engine)
    crafted = s.get(f"{console.url}/dialplans/bank", params={"published": "Call 555-0100 now", "done": "hacked"})
    assert "555-0100" not in crafted.text and "hacked" not in crafted.text  # the page words its own messages


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "pat")
    edited = BANK.replace("How can I help you today?", "What can I do for you?")
    r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": edited, "note": "x"})
    assert r.status_code == 403 and "CSRF" in r.text
    for forged in ("forged", "ünïcödé-tökén"):
        r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": edited, "note": "x", "csrf": forged})
        assert r.status_code == 403
    s2 = requests.Session()
    login_token(s2, console.url)
    r = s2.post(f"{console.url}/login", data={"csrf": "ünïcödé", "name": "pat", "password": PASSWORDS["pat"]})
    assert r.status_code == 403 and "expired or came from another site" in r.text
    token = page_csrf(s, console.url)
    r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": edited, "csrf": token},
               headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.text
    r = s.post(f"{console.url}/api/validate", json={"text": edited})
    assert r.status_code == 403
    assert [v.version for v in list_versions(console.engine, "bank")] == [1]  # nothing stored
    r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": edited, "csrf": token, "note": "friendlier"},
               allow_redirects=False)
    assert r.status_code == 303 and [v.version for v in list_versions(console.engine, "bank")] == [1, 2]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_twenty_wrong_passwords_are_throttled_and_audited(console: RunningConsole) -> None:
    statuses = [sign_in(console.url, "pat", "wrong-password-123")[1].status_code for _ in range(20)]
    assert statuses[:5] == [401] * 5  # login_free_failures
    # Then each attempt must wait (1 s, doubling): those within the wait are refused unchecked. On a slow machine
    # a wait may end between two attempts, which checks one more password (and doubles the wait).
    assert statuses[5] == 429 and statuses.count(429) >= 12
    _, r = sign_in(console.url, "pat")  # even the right password waits now
    assert r.status_code == 429 and "try again in" in r.text and int(r.headers["retry-after"]) >= 1
    trail = kinds(console.engine)
    assert trail.count("console.login_failed") == statuses.count(401)
    assert trail.count("console.login_throttled") == statuses.count(429) + 1
    payloads = " ".join(r.payload for r in AuditTrail(console.engine).rows())
    assert "wrong-password-123" not in payloads and PASSWORDS["pat"] not in payloads
    assert AuditTrail(console.engine).verify().ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_old_wrong_passwords_are_forgotten(migrated_engine: Engine) -> None:
    import datetime as dt

    from voiceivr.console.accounts import LoginRefused, authenticate

    seed_admin = add_user(migrated_engine, "olga", "viewer", "olga-password-123", by="test")
    throttle = Throttle(free_failures=2, max_delay_s=60)
    for _ in range(2):
        with pytest.raises(LoginRefused, match="wrong name or password"):
            authenticate(migrated_engine, "olga", "nope", "10.0.0.9", throttle)
    with pytest.raises(LoginRefused, match="too many"):
        authenticate(migrated_engine, "olga", "olga-password-123", "10.0.0.9", throttle)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    with migrated_engine.begin() as conn:
        conn.execute(sa.text("UPDATE console_login_throttle SET locked_until = :t, last_failure_at = :t"),
                     {"t": long_ago})
    with pytest.raises(LoginRefused, match="wrong name or password"):  # counted afresh: no wait after one
        authenticate(migrated_engine, "olga", "nope", "10.0.0.9", throttle)
    assert authenticate(migrated_engine, "olga", "olga-password-123", "10.0.0.9", throttle) == seed_admin


def test_throttle_delay_grows_and_is_capped() -> None:
    t = Throttle(free_failures=5, max_delay_s=900)
    assert [t.delay_after(n) for n in (1, 4, 5, 6, 7, 10)] == [0, 0, 1, 2, 4, 32]
    assert t.delay_after(100) == 900


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_5_mb_paste_is_refused_and_nothing_is_stored(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "pat")
    token = page_csrf(s, console.url)
    huge = BANK + "#" + "x" * (5 * 1024 * 1024)
    r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": huge, "csrf": token})
    assert r.status_code == 413 and "at most" in r.text and "nothing was stored" in r.text
    r = s.post(f"{console.url}/api/validate", json={"text": huge}, headers={"X-CSRF-Token": token})
    assert r.status_code == 413
    just_over = BANK + "#" + "x" * (1024 * 1024)  # small enough to arrive, too big to be a dialplan
    r = s.post(f"{console.url}/api/validate", json={"text": just_over}, headers={"X-CSRF-Token": token})
    assert r.status_code == 413 and "at most 1,048,576" in r.json()["refused"]
    assert [v.version for v in list_versions(console.engine, "bank")] == [1]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_yaml_bomb_is_a_problem_not_a_hang(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "eddie")
    token = page_csrf(s, console.url)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    r = s.post(f"{console.url}/api/validate", json={"text": bomb}, headers={"X-CSRF-Token": token}, timeout=20)
    assert r.status_code == 200
    assert any("alias" in p["message"] or "values" in p["message"] for p in r.json()["problems"])


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_text_no_file_could_hold_is_refused_not_a_crash(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "eddie")
    h = {"X-CSRF-Token": page_csrf(s, console.url), "Content-Type": "application/json"}
    r = s.post(f"{console.url}/api/validate", data=b'{"text": "name: x\\ud800"}', headers=h)
    assert r.status_code == 413 and "not text" in r.json()["refused"]
    r = s.post(f"{console.url}/api/validate", data=b'{"text": "name: x\\u0000"}', headers=h)
    assert r.status_code == 200 and "U+0000" in r.json()["problems"][0]["message"]
    r = s.post(f"{console.url}/api/simulate", data=b'{"text": "name: x", "script": "say \\udfff"}', headers=h)
    assert r.status_code == 400 and "not text" in r.json()["refused"]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_script_tag_in_a_prompt_is_escaped_everywhere(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "pat")
    token = page_csrf(s, console.url)
    evil = BANK.replace("How can I help you today?", "<script>alert('x')</script> How can I help?")
    r = s.post(f"{console.url}/dialplans/bank/publish",
               data={"text": evil, "csrf": token, "note": "<img src=x onerror=alert(1)>"})
    assert r.status_code == 200  # after the redirect
    for path in ("/dialplans/bank", "/dialplans", "/audit"):
        html = s.get(f"{console.url}{path}").text
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in s.get(f"{console.url}/dialplans/bank").text
    r = s.post(f"{console.url}/api/simulate", json={"text": evil, "script": "say hello"},
               headers={"X-CSRF-Token": token})
    assert r.headers["content-type"].startswith("application/json")  # the page shows it with textContent


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_roles_are_enforced_on_every_route(console: RunningConsole) -> None:
    viewer, _ = sign_in(console.url, "vera")
    token = page_csrf(viewer, console.url)
    assert viewer.get(f"{console.url}/calls").status_code == 200
    assert viewer.get(f"{console.url}/audit").status_code == 200
    r = viewer.post(f"{console.url}/api/validate", json={"text": BANK}, headers={"X-CSRF-Token": token})
    assert r.status_code == 403 and "editor" in r.json()["error"]
    r = viewer.post(f"{console.url}/dialplans/bank/publish", data={"text": BANK + "#\n", "csrf": token})
    assert r.status_code == 403 and "publisher" in r.text
    editor, _ = sign_in(console.url, "eddie")
    token = page_csrf(editor, console.url)
    r = editor.post(f"{console.url}/api/simulate", json={"text": BANK, "script": "say what are your hours"},
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and any("intent hours" in line for line in r.json()["lines"])
    r = editor.post(f"{console.url}/dialplans/bank/rollback", data={"version": "1", "csrf": token})
    assert r.status_code == 403
    assert [v.version for v in list_versions(console.engine, "bank")] == [1]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_publish_then_roll_back_in_one_step(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "pat")
    token = page_csrf(s, console.url)
    edited = BANK.replace("How can I help you today?", "What can I do for you?")
    s.post(f"{console.url}/dialplans/bank/publish", data={"text": edited, "csrf": token, "note": "friendlier"})
    r = s.post(f"{console.url}/dialplans/bank/rollback", data={"version": "1", "csrf": token, "note": "complaints"})
    assert r.status_code == 200 and "rolled back to version 1: now version 3" in r.text
    v1, v2, v3 = list_versions(console.engine, "bank")
    assert v3.source.startswith(v1.source) and v3.note == "rollback to version 1: complaints"
    assert v2.published_by == v3.published_by == "pat"
    rows = [r for r in AuditTrail(console.engine).rows() if r.kind in ("console.publish", "console.rollback")]
    assert [(r.kind, r.actor, r.payload_obj()["version"]) for r in rows] == [
        ("console.publish", "admin:pat", 2), ("console.rollback", "admin:pat", 3)]
    r = s.post(f"{console.url}/dialplans/bank/publish", data={"text": "name: bank\nnodes: {}\n", "csrf": token})
    assert r.status_code == 422 and "the live version is unchanged" in r.text
    assert len(list_versions(console.engine, "bank")) == 3


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_sign_out_ends_the_session(console: RunningConsole) -> None:
    s, _ = sign_in(console.url, "vera")
    token = page_csrf(s, console.url)
    cookie = s.cookies.get("voiceivr_console")
    s.post(f"{console.url}/logout", data={"csrf": token})
    stale = requests.get(f"{console.url}/dialplans", cookies={"voiceivr_console": cookie or ""},
                         allow_redirects=False)
    assert stale.status_code == 303


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_accounts_refuse_bad_names_roles_and_short_passwords(migrated_engine: Engine) -> None:
    with pytest.raises(AccountError, match="not a valid admin name"):
        add_user(migrated_engine, "<b>x", "viewer", "long-enough-password", by="test")
    with pytest.raises(AccountError, match="unknown role"):
        add_user(migrated_engine, "x", "root", "long-enough-password", by="test")
    with pytest.raises(AccountError, match="12 to 1024"):
        add_user(migrated_engine, "x", "viewer", "short", by="test")
    add_user(migrated_engine, "x", "viewer", "long-enough-password", by="test")
    with migrated_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM console_users")).scalar_one()
    assert stored.startswith("$argon2") and "long-enough-password" not in stored


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_console_commands_manage_admins(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from voiceivr.cli import cli
    from voiceivr.console.accounts import LoginRefused, authenticate, ensure_first_admin
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    first = ensure_first_admin(engine)
    assert first is not None and len(first) >= 20 and ensure_first_admin(engine) is None  # once only
    runner = CliRunner()
    r = runner.invoke(cli, ["console", "add-user", "alice", "--role", "editor", "--password-stdin"],
                      input="alice-password-99\n")
    assert r.exit_code == 0 and "console admin alice: role editor" in r.output
    r = runner.invoke(cli, ["console", "add-user", "Bad Name", "--role", "viewer", "--password-stdin"],
                      input="whatever-password-1\n")
    assert r.exit_code == 1 and "not a valid admin name" in r.output
    r = runner.invoke(cli, ["console", "users"])
    assert r.output.split() == ["admin", "publisher", "alice", "editor"]
    assert authenticate(engine, "alice", "alice-password-99", "127.0.0.1", Throttle()).role == "editor"
    assert runner.invoke(cli, ["console", "disable-user", "alice"]).exit_code == 0
    with pytest.raises(LoginRefused, match="wrong name or password"):
        authenticate(engine, "alice", "alice-password-99", "127.0.0.1", Throttle())
    assert [k for k in kinds(engine) if k.startswith("console.user")] == [
        "console.user_added", "console.user_added", "console.user_disabled"]
    engine.dispose()


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_calls_list_filters_and_timeline(console: RunningConsole) -> None:
    import datetime as dt

    from voiceivr.db.models import Call, Turn

    now = dt.datetime.now(dt.UTC)
    with console.engine.begin() as conn:
        for n, (outcome, caller, age_h) in enumerate([("resolved", "sip:+15550001@x", 1),
                                                      ("transferred", "sip:+15550002@x", 1),
                                                      ("resolved", "sip:<b>evil</b>@x", 30)]):
            conn.execute(sa.insert(Call).values(
                id=f"00000000-0000-4000-8000-00000000000{n}", started_at=now - dt.timedelta(hours=age_h),
                ended_at=now - dt.timedelta(hours=age_h) + dt.timedelta(seconds=42), node="n", source="sip",
                caller_uri=caller, outcome=outcome, resolved_tasks=1, engine_seconds=0.5,
                stats_json='{"budget_breaches": [{"stage": "capture", "ms": 600}]}'))
        conn.execute(sa.insert(Turn).values(call_id="00000000-0000-4000-8000-000000000000", idx=0, node="login",
                                            input_kind="dtmf", transcript="[secret]", intent=None, barged_in=False))
        conn.execute(sa.insert(Turn).values(call_id="00000000-0000-4000-8000-000000000000", idx=1,
                                            node="main_menu", input_kind="speech", transcript="my balance",
                                            intent="balance", tier=1, confidence=0.9, barged_in=True))
    s, _ = sign_in(console.url, "vera")
    html = s.get(f"{console.url}/calls").text
    assert html.count("/calls/00000000-") == 3 and "42.0 s" in html and "<b>evil</b>" not in html
    only = s.get(f"{console.url}/calls", params={"outcome": "transferred"}).text
    assert only.count("/calls/00000000-") == 1 and "+15550002" in only
    recent = s.get(f"{console.url}/calls", params={"since_hours": "2", "caller": "+1555"}).text
    assert recent.count("/calls/00000000-") == 2
    timeline = s.get(f"{console.url}/calls/00000000-0000-4000-8000-000000000000").text
    assert "[secret]" in timeline and "my balance" in timeline and "balance" in timeline
    assert s.get(f"{console.url}/calls/nope").status_code == 404


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_stats_page_plots_latency_and_outcomes(console: RunningConsole) -> None:
    import datetime as dt
    import json

    from voiceivr.db.models import Call

    now = dt.datetime.now(dt.UTC)
    with console.engine.begin() as conn:
        for n, outcome in enumerate(["resolved", "resolved", "transferred"]):
            stats = {"latency_samples": {"capture": [200.0 + n, 300.0], "e2e": [350.0, 900.0]},
                     "budget_breaches": [{"stage": "e2e", "ms": 900.0}], "barge_ins": 1}
            conn.execute(sa.insert(Call).values(
                id=f"10000000-0000-4000-8000-00000000000{n}", started_at=now - dt.timedelta(minutes=5), node="n",
                source="sip", outcome=outcome, resolved_tasks=1, engine_seconds=0.5, stats_json=json.dumps(stats)))
    s, _ = sign_in(console.url, "vera")
    html = s.get(f"{console.url}/stats", params={"since": "1h"}).text
    assert "3 call(s)" in html and "3 barge-in(s)" in html
    latency = html[html.index('id="latency-chart"'):html.index('id="outcome-chart"')]
    assert latency.count('class="p50"') == 2 and latency.count('class="p95"') == 2  # capture and e2e had samples
    assert "p95 900 ms" in latency and latency.count('class="budget"') == 6  # one budget mark per stage
    outcomes = html[html.index('id="outcome-chart"'):]
    assert outcomes.count('class="count"') == 2 and ">resolved<" in outcomes
    bad = s.get(f"{console.url}/stats", params={"since": "<script>"}).text
    assert "is not a time" in bad and "<script>" not in bad
    assert s.get(f"{console.url}/stats", params={"since": "999999999999d"}).status_code == 200


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_the_editor_checks_schedules_and_simulates_a_chosen_start(console: RunningConsole) -> None:
    # Schedules are dialplan YAML like the rest: a bad time zone is a problem at its line and column, and
    # the simulate pane's "at" line says when the call starts, so each branch can be tried.
    from pathlib import Path

    hours_yaml = (Path(__file__).resolve().parents[1] / "dialplans" / "hours.yaml").read_text()
    s, _ = sign_in(console.url, "pat")
    token = page_csrf(s, console.url)
    h = {"X-CSRF-Token": token}
    typo = hours_yaml.replace("timezone: America/New_York", "timezone: America/New_Yrok")
    line = typo.splitlines().index("    timezone: America/New_Yrok") + 1
    problems = s.post(f"{console.url}/api/validate", json={"text": typo}, headers=h).json()["problems"]
    assert [(p["line"], p["col"]) for p in problems if "unknown time zone" in p["message"]] == [(line, 15)]
    for at, state in (("2026-12-22T10:00-05:00", "open"), ("2026-12-25T10:00-05:00", "holiday")):
        r = s.post(f"{console.url}/api/simulate", json={"text": hours_yaml, "script": f"at {at}\nsay agent"},
                   headers=h)
        assert r.status_code == 200, r.text
        assert any(line.startswith(f"    schedule contact_centre: {state}") for line in r.json()["lines"])
    r = s.post(f"{console.url}/api/simulate", json={"text": hours_yaml, "script": "at christmas"}, headers=h)
    assert r.status_code == 400 and "is not a start time" in r.text
