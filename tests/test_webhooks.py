"""HTTP backends: the backends file, signed requests, fault injection on a real server on 127.0.0.1, the circuit
breaker, and the runner's write-ahead audit around each request."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from tests.support.http_backend import closed_port, fault_backend
from voiceivr import metrics
from voiceivr.actions.backends import DEFAULT_FAILURE, BackendsInvalid, parse_backends
from voiceivr.actions.catalog import plugin_registry
from voiceivr.actions.effects import RunnerRegistry
from voiceivr.actions.registry import ActionContext, ActionError, ActionOutcomeUnknown, ActionRegistry
from voiceivr.actions.runner import ActionRunner
from voiceivr.actions.webhooks import Backend, CircuitBreaker, HttpAction, build_actions, sign, verify
from voiceivr.audit.chain import AuditTrail
from voiceivr.cli import cli
from voiceivr.errors import ConfigError
from voiceivr.plugins import PluginError
from voiceivr.policy.identity import Contact, HttpIdentity, IdentityUnavailable, enabled_identity
from voiceivr.settings import Settings

SECRET = "s3cret-for-tests-0123456789abcdef"
FAILED = "I couldn't reach the payments system; let me connect you to someone."
SCHEMAS = Path(__file__).resolve().parents[1] / "voiceivr" / "actions" / "schemas"


def backends_yaml(url: str, *, timeout: float = 0.3, retries: int = 1, failures: int = 3,
                  cooldown: float = 60) -> str:
    return f"""\
backends:
  pay:
    url: {url}
    secret: {{env: TEST_BACKEND_SECRET}}
    timeout_s: {timeout}
    retries: {retries}
    breaker: {{failures: {failures}, cooldown_s: {cooldown}}}
actions:
  pay:
    backend: pay
    risk: high
    params:
      amount: money
      to: str
    path: /actions/pay
    reply:
      reference: str
      balance: money
    failure: "{FAILED}"
"""


def load(url: str, **kwargs: Any) -> tuple[ActionRegistry, Backend]:
    spec = parse_backends(backends_yaml(url, **kwargs), "backends.yaml", environ={"TEST_BACKEND_SECRET": SECRET})
    backends = {name: Backend(b) for name, b in spec.backends.items()}
    reg = ActionRegistry()
    for action in build_actions(spec, backends):
        reg.register(action)
    return reg, backends["pay"]


def ctx(key: str = "key-1") -> ActionContext:
    return ActionContext("call-1", "c-1", None, dt.datetime.now(dt.UTC), key, None, 41)


# --- signing ----------------------------------------------------------------------------------------------


def test_signature_verifies_only_the_same_body_secret_and_a_fresh_timestamp() -> None:
    body, now = b'{"a":1}', int(time.time())
    header = sign(SECRET.encode(), body, now)
    assert verify(SECRET.encode(), body, header)
    assert not verify(SECRET.encode(), b'{"a":2}', header)
    assert not verify(b"another-secret-0123456789", body, header)
    assert not verify(SECRET.encode(), body, sign(SECRET.encode(), body, now - 600))  # a replay, later
    assert not verify(SECRET.encode(), body, "v1=deadbeef")


def test_a_request_carries_signature_key_call_and_audit_seq_and_matches_the_schema() -> None:
    with fault_backend(SECRET.encode()) as b:
        reg, _ = load(b.url)
        result = reg.get("pay").run({"amount": 500, "to": "savings"}, ctx("k-sig"))
        (seen,) = b.seen
    assert result == {"reference": "R1", "balance": 1000}
    assert seen.signature_ok
    assert seen.headers["Idempotency-Key"] == "k-sig" and seen.headers["Voiceivr-Call-Id"] == "call-1"
    assert seen.headers["Voiceivr-Audit-Seq"] == "41"
    body = json.loads(seen.body)
    jsonschema.validate(body, json.loads((SCHEMAS / "request.schema.json").read_text()))
    jsonschema.validate(result, json.loads((SCHEMAS / "reply.schema.json").read_text()))
    assert body == {"action": "pay", "params": {"amount": 500, "to": "savings"}, "principal": "c-1",
                    "call_id": "call-1", "idempotency_key": "k-sig", "audit_seq": 41}


def test_a_backend_with_another_secret_refuses_and_the_caller_hears_the_declared_prompt() -> None:
    with fault_backend(b"not-the-same-secret-at-all-0000") as b:
        reg, _ = load(b.url)
        with pytest.raises(ActionError) as err:
            reg.get("pay").run({"amount": 500, "to": "savings"}, ctx())
    assert str(err.value) == FAILED and err.value.details["status"] == 401
    assert not isinstance(err.value, ActionOutcomeUnknown) and not b.executions


# --- faults -----------------------------------------------------------------------------------------------

# mode -> (the run's status, the outcome audited): "failed" when the backend surely did nothing, "unknown" when
# it may have acted (the runner settles it later with the same key).
FAULTS = {
    "500": ("failed", "http_5xx"),
    "reset": ("unknown", "reset"),
    "garbage": ("unknown", "bad_json"),
    "huge": ("unknown", "too_large"),
    "wrong_schema": ("unknown", "bad_schema"),
    "slow": ("unknown", "timeout"),
    "inject": ("unknown", "injection_flagged"),
}


@pytest.fixture
def audited(migrated_engine: Engine) -> Engine:
    return migrated_engine


def _runner(engine: Engine, reg: ActionRegistry) -> ActionRunner:
    return ActionRunner(engine, RunnerRegistry.from_actions(reg, engine), node="test")


def _run(runner: ActionRunner, key: str) -> Any:
    return runner.run(key=key, action="pay", params={"amount": 500, "to": "savings"}, risk="high")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_every_fault_ends_in_the_declared_prompt_an_audit_row_and_one_execution_per_key(
        audited: Engine, mode: str) -> None:
    status, outcome = FAULTS[mode]
    committed: list[bool] = []
    with fault_backend(SECRET.encode(), mode=mode, stall_s=0.6) as b:
        def intent_is_committed(seen: Any) -> None:  # item 6: the audit row exists before the request arrives
            seq = int(seen.headers["Voiceivr-Audit-Seq"])
            committed.append(any(r.seq == seq and r.kind == "action.intent" for r in AuditTrail(audited).rows()))

        b.on_request = intent_is_committed
        reg, _ = load(b.url)
        started = time.monotonic()
        out = _run(_runner(audited, reg), f"k-{mode}")
        elapsed = time.monotonic() - started
        requests = b.requests_for(f"k-{mode}")
    assert out.status == status and out.reason == FAILED
    assert committed and all(committed)
    assert {s.headers["Idempotency-Key"] for s in requests} == {f"k-{mode}"}
    assert all(s.signature_ok for s in requests)
    assert max(b.executions.values(), default=0) <= 1
    assert elapsed < 2.5  # two tries of 0.3 s and a back-off, whatever the backend does
    (result,) = [r for r in AuditTrail(audited).rows() if r.kind == "action.result"]
    payload = json.loads(result.payload)
    assert payload["status"] == status and payload["result"]["outcome"] == outcome
    assert payload["intent_audit_seq"] == out.intent_seq


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_refused_connection_is_failed_fast_with_the_prompt(audited: Engine) -> None:
    reg, _ = load(f"http://127.0.0.1:{closed_port()}")
    out = _run(_runner(audited, reg), "k-refused")
    assert out.status == "failed" and out.reason == FAILED


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_refusal_the_backend_words_is_what_the_caller_hears(audited: Engine) -> None:
    with fault_backend(SECRET.encode(), mode="refuse") as b:
        reg, _ = load(b.url)
        out = _run(_runner(audited, reg), "k-422")
    assert out.status == "failed" and out.reason == "There isn't enough money in your checking account."


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_retry_after_a_timeout_reuses_the_key_and_the_action_runs_once(audited: Engine) -> None:
    with fault_backend(SECRET.encode(), mode="slow_once", stall_s=0.6) as b:
        reg, _ = load(b.url)
        runner = _runner(audited, reg)
        out = _run(runner, "k-slow-once")
        again = _run(runner, "k-slow-once")  # the engine asking again: the runner answers, no request
        requests = b.requests_for("k-slow-once")
    assert out.ok and out.result == {"reference": "R1", "balance": 1000}
    assert len(requests) == 2 and b.executions["k-slow-once"] == 1
    assert again.status == "duplicate" and len(b.seen) == 2


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_unknown_outcome_is_settled_by_recovery_with_the_same_key(audited: Engine) -> None:
    with fault_backend(SECRET.encode(), mode="slow", stall_s=0.6) as b:
        reg, _ = load(b.url)
        runner = _runner(audited, reg)
        assert _run(runner, "k-recover").status == "unknown"
        b.mode = "ok"
        report = runner.recover()
        keys = {s.headers["Idempotency-Key"] for s in b.seen}
    assert report.resumed == 1 and keys == {"k-recover"}
    assert b.executions["k-recover"] == 1 and runner.status("k-recover") == "succeeded"


# --- circuit breaker ----------------------------------------------------------------------------------------


def test_breaker_opens_after_n_failures_then_lets_one_trial_through() -> None:
    now = [0.0]
    br = CircuitBreaker(3, 10.0, clock=lambda: now[0])
    for _ in range(3):
        assert br.allow()
        br.record(False)
    assert br.state == "open" and not br.allow()
    now[0] = 10.5
    assert br.state == "half_open" and br.allow() and not br.allow()  # one trial at a time
    br.record(False)
    assert br.state == "open" and not br.allow()
    now[0] = 21.0
    assert br.allow()
    br.record(True)
    assert br.state == "closed" and br.allow()


def test_a_dead_backend_fails_fast_once_the_circuit_opens() -> None:
    with fault_backend(SECRET.encode(), mode="slow", stall_s=1.0) as b:
        reg, backend = load(b.url, timeout=0.2, retries=0, failures=2)
        action = reg.get("pay")
        before = metrics.BACKEND_REQUESTS.labels("pay", "circuit_open")._value.get()
        for i in range(2):
            with pytest.raises(ActionOutcomeUnknown):
                action.run({"amount": 1, "to": "x"}, ctx(f"k-br-{i}"))
        started = time.monotonic()
        with pytest.raises(ActionError) as err:
            action.run({"amount": 1, "to": "x"}, ctx("k-br-fast"))
        fast = time.monotonic() - started
    assert str(err.value) == FAILED and err.value.details["outcome"] == "circuit_open"
    assert not isinstance(err.value, ActionOutcomeUnknown)  # nothing was sent
    assert fast < 0.05 and backend.breaker.state == "open"
    assert metrics.BACKEND_REQUESTS.labels("pay", "circuit_open")._value.get() == before + 1
    assert not b.requests_for("k-br-fast")


# --- the backends file ----------------------------------------------------------------------------------------


BROKEN = """\
backends:
  core:
    url: ftp://example.com
    secret: hunter2-in-the-yaml
    timeout_s: 0
actions:
  login:
    backend: crm
    risk: medium
    authenticates: true
    params:
      pin: {type: pin, secret: true}
    path: actions/login
    reply: {name: str}
    colour: blue
"""


def test_every_problem_of_a_backends_file_has_its_line_and_column() -> None:
    with pytest.raises(BackendsInvalid) as err:
        parse_backends(BROKEN, "b.yaml", environ={})
    got = [str(p) for p in err.value.problems]
    assert got == [
        "b.yaml:3:10: 'url' must be an http:// or https:// URL without query, got 'ftp://example.com'",
        "b.yaml:4:13: backend 'core': write where the secret is ({env: NAME} or {file: PATH}), never the secret "
        "itself",
        "b.yaml:5:16: 'timeout_s' must be a number from 0.05 to 60, got 0",
        "b.yaml:8:14: action 'login': unknown backend 'crm' (declared: core)",
        "b.yaml:9:11: action 'login': 'risk' must be low or high",
        "b.yaml:12:19: action 'login' parameter 'pin': unknown type 'pin' (known: money, digits, date, bool, str, "
        "address)",
        "b.yaml:13:11: 'path' must be a path starting with '/', got 'actions/login'",
        "b.yaml:14:12: action 'login' authenticates, so its reply must declare 'principal: str' (required)",
        "b.yaml:15:5: unknown key 'colour' in action 'login' (known: backend, risk, params, path, method, reply, "
        "failure, timeout_s, retries, requires_login, authenticates, description, readback)",
    ]


def test_a_short_or_missing_secret_is_a_problem_and_the_default_prompt_applies() -> None:
    text = backends_yaml("http://127.0.0.1:1").replace(f'    failure: "{FAILED}"\n', "")
    with pytest.raises(BackendsInvalid) as err:
        parse_backends(text, "b.yaml", environ={"TEST_BACKEND_SECRET": "short"})
    assert "at least 16 bytes" in str(err.value.problems[0])
    with pytest.raises(BackendsInvalid) as err:
        parse_backends(text, "b.yaml", environ={})
    assert "TEST_BACKEND_SECRET is not set" in str(err.value.problems[0])
    spec = parse_backends(text, "b.yaml", environ={"TEST_BACKEND_SECRET": SECRET})
    assert spec.actions[0].failure == DEFAULT_FAILURE and "hunter" not in repr(spec)


def test_dialplan_validate_reports_the_backends_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "backends.yaml"
    bad.write_text(BROKEN)
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "")
    monkeypatch.setenv("VOICEIVR_PLUGINS_BACKENDS", str(bad))
    plan = Path(__file__).resolve().parents[1] / "dialplans" / "bank_http.yaml"
    out = CliRunner().invoke(cli, ["dialplan", "validate", str(plan)])
    assert out.exit_code == 1
    assert f"{bad}:9:11: action 'login': 'risk' must be low or high" in out.output


def test_actions_keep_only_declared_reply_fields() -> None:
    with fault_backend(SECRET.encode()) as b:
        _reg, backend = load(b.url)
        action = HttpAction(parse_backends(backends_yaml(b.url), "x", environ={"TEST_BACKEND_SECRET": SECRET})
                            .actions[0], backend)
        b.answers["k-extra"] = {"reference": "R9", "balance": 5, "note": "undeclared"}
        assert action({"amount": 1, "to": "x"}, ctx("k-extra")) == {"reference": "R9", "balance": 5}


# --- voiceivr backend check -----------------------------------------------------------------------------------


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_backend_check_reports_what_works_and_exits_1_on_a_wrong_secret(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BACKEND_SECRET", SECRET)
    file = tmp_path / "backends.yaml"
    with fault_backend(SECRET.encode()) as good:
        file.write_text(backends_yaml(good.url))
        out = CliRunner().invoke(cli, ["backend", "check", str(file)])
        assert out.exit_code == 0, out.output
        assert "pay              health       ok  GET /health: HTTP 200" in out.output
        assert "pay              signed test  ok  POST /voiceivr/test: HTTP 200" in out.output
        assert good.seen[-1].signature_ok
    with fault_backend(b"the-backend-has-another-secret!!") as wrong:
        file.write_text(backends_yaml(wrong.url))
        out = CliRunner().invoke(cli, ["backend", "check", str(file)])
    assert out.exit_code == 1
    assert "signed test  FAILED  POST /voiceivr/test: HTTP 401" in out.output and "secret" in out.output
    file.write_text(backends_yaml(f"http://127.0.0.1:{closed_port()}"))
    out = CliRunner().invoke(cli, ["backend", "check", str(file)])
    assert out.exit_code == 1 and "health       FAILED" in out.output and "connect_error" in out.output


# --- the node: registry and identity from plugins.backends ---------------------------------------------------------


def _node_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, identity: bool, enabled: list[str],
                   choose: str = "") -> Settings:
    monkeypatch.setenv("TEST_BACKEND_SECRET", SECRET)
    text = backends_yaml("http://127.0.0.1:1").replace("actions:\n", """\
actions:
  login:
    backend: pay
    risk: low
    authenticates: true
    params: {account_number: digits, pin: {type: digits, secret: true}}
    path: /actions/login
    reply: {principal: str, phone_on_file: {type: str, required: false}, totp_enrolled: {type: bool, required: false}}
""")
    if identity:
        text += "identity: {backend: pay, totp: /identity/totp}\n"
    file = tmp_path / f"backends-{identity}.yaml"
    file.write_text(text)
    settings = Settings()
    settings.plugins.enabled, settings.plugins.backends, settings.plugins.identity = enabled, str(file), choose
    return settings


def test_the_backends_identity_answers_unless_a_plugin_competes_unchosen(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    alone = enabled_identity(_node_settings(tmp_path, monkeypatch, identity=True, enabled=[]), None)
    assert isinstance(alone, HttpIdentity)
    contact = alone.contact("c-1", {"principal": "c-1", "phone_on_file": "+15550001111", "totp_enrolled": True})
    assert contact == Contact("c-1", "+15550001111", True)
    assert alone.contact("c-1", {"principal": "c-1", "phone_on_file": "call me"}) == Contact("c-1", None, False)
    with pytest.raises(ConfigError, match="both the backends file and plugin 'demo'"):
        enabled_identity(_node_settings(tmp_path, monkeypatch, identity=True, enabled=["demo"]), None)
    chosen = enabled_identity(_node_settings(tmp_path, monkeypatch, identity=True, enabled=["demo"],
                                             choose="backends"), None)
    assert isinstance(chosen, HttpIdentity)
    with pytest.raises(ConfigError, match="declares no identity"):
        enabled_identity(_node_settings(tmp_path, monkeypatch, identity=False, enabled=[], choose="backends"), None)
    assert enabled_identity(_node_settings(tmp_path, monkeypatch, identity=False, enabled=[]), None) is None


def test_an_action_named_by_a_plugin_and_the_backends_file_is_refused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _node_settings(tmp_path, monkeypatch, identity=False, enabled=[])
    assert {"login", "pay"} <= set(plugin_registry(settings).names())
    settings.plugins.enabled = ["demo"]
    with pytest.raises(PluginError, match=r"'login' is declared by the backends file .* and provided by the "
                                          r"enabled plugin 'demo'"):
        plugin_registry(settings)


def test_a_totp_check_that_cannot_reach_the_backend_is_unavailable_not_wrong() -> None:
    with fault_backend(SECRET.encode(), mode="500") as b:
        spec = parse_backends(backends_yaml(b.url).replace("actions:\n", """\
identity: {backend: pay, totp: /identity/totp}
actions:
  login:
    backend: pay
    risk: low
    authenticates: true
    path: /actions/login
    reply: {principal: str}
"""), "b.yaml", environ={"TEST_BACKEND_SECRET": SECRET})
        assert spec.identity is not None
        ident = HttpIdentity(spec.identity, Backend(spec.backends["pay"]))
        with pytest.raises(IdentityUnavailable):
            ident.verify_totp("c-1", "123456", dt.datetime.now(dt.UTC), 1)
        (seen,) = b.seen
    assert seen.signature_ok and json.loads(seen.body)["params"]["code"] == "123456"
    jsonschema.validate(json.loads(seen.body), json.loads((SCHEMAS / "request.schema.json").read_text()))


def test_the_demo_backends_replies_match_the_reply_schema() -> None:
    """The schema is the contract a backend is written to: the example backend's real replies (success, a
    refusal, a TOTP answer) all satisfy it."""
    from voiceivr.demo import backend as demo_backend

    server, _bank = demo_backend.make_server(SECRET.encode(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        spec = parse_backends(backends_yaml(f"http://127.0.0.1:{server.server_address[1]}"), "b.yaml",
                              environ={"TEST_BACKEND_SECRET": SECRET})
        b = Backend(spec.backends["pay"])
        schema = json.loads((SCHEMAS / "reply.schema.json").read_text())
        replies = []
        for path, params in (("/actions/login", {"account_number": "10000001", "pin": "1234"}),
                             ("/actions/login", {"account_number": "10000001", "pin": "0000"}),
                             ("/identity/totp", {"principal": "c-1001", "code": "000000",
                                                 "at": dt.datetime.now(dt.UTC).isoformat(), "window": 1})):
            key = f"k-{len(replies)}"
            body = {"action": path.rsplit("/", 1)[1], "params": params, "principal": None, "call_id": "c",
                    "idempotency_key": key, "audit_seq": None}
            replies.append(b.signed_post(path, body, key=key, call_id="c", audit_seq=None, timeout=2, what="t"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [r.status for r in replies] == [200, 422, 200]
    assert replies[0].data["principal"] == "c-1001" and "step" in replies[2].data
    for r in replies:
        jsonschema.validate(r.data, schema)


def test_voiceivr_plugins_lists_the_backends_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _node_settings(tmp_path, monkeypatch, identity=True, enabled=[])
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "")
    monkeypatch.setenv("VOICEIVR_PLUGINS_BACKENDS", settings.plugins.backends)
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "backend pay               http://127.0.0.1:1 (secret from env:TEST_BACKEND_SECRET)" in out.output
    assert "action login              low  (account_number: digits, pin: digits, secret) [authenticates]" in out.output
    assert SECRET not in out.output
    Path(settings.plugins.backends).write_text(BROKEN)
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 1 and "error: " in out.output and ":9:11: action 'login': 'risk'" in out.output
