"""The identity provider interface as the gate uses it: contact details learnt at login (from the login's own
result, or looked up), TOTP checked by the provider and kept single-use by the core, a provider that fails,
none at all, and flags kept by the core. Real database, real gate, the in-memory provider or test doubles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.support.safepath import (  # noqa: F401 - env_fixture provides the env fixture
    ALICE_PHONE,
    TOTP_SECRET,
    Env,
    confirmed_request,
    env_fixture,
    login,
    say,
    transfer,
)
from voiceivr.actions.effects import DbAction, RunContext, RunnerRegistry
from voiceivr.audit.chain import AuditTrail
from voiceivr.cli import cli
from voiceivr.db.models import CodeFailure, PrincipalFlag
from voiceivr.errors import ConfigError
from voiceivr.plugins import PluginError
from voiceivr.policy.flags import PrincipalFlags
from voiceivr.policy.gate import ActionRequest
from voiceivr.policy.identity import Contact, IdentityProvider, IdentityUnavailable, enabled_identity, totp_step
from voiceivr.policy.services import SafePathServices
from voiceivr.settings import Settings
from voiceivr.sim import ledger


def _kinds(env: Env, call_id: str = "call-1") -> list[str]:
    return [r.kind for r in AuditTrail(env.engine).rows() if r.call_id == call_id]


def _services(env: Env, identity: IdentityProvider | None, registry: RunnerRegistry | None = None
              ) -> SafePathServices:
    """The env's safe path with another identity provider (and, if given, other actions)."""
    return SafePathServices.from_settings(env.settings, env.engine, registry or ledger.registry(), identity,
                                          clock=env.clock, sms=env.services.sms)


def test_the_provider_is_asked_once_per_login_with_the_whole_login_result(env: Env) -> None:
    gate = env.gate()
    login(gate)
    assert env.identity.logins == [("alice", {"authenticated": True, "principal": "alice"})]
    _, d = gate.decide(transfer())
    assert d.allowed and d.channels == ("sms",)  # alice: a phone on file, no TOTP
    _, d = gate.decide(transfer())
    assert len(env.identity.logins) == 1  # asked at the login, not at every decision


class LoginReplyIdentity:
    """Like an HTTP backend: the login reply carries the contact; there is no secret to hand over."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, int]] = []

    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        return Contact(principal, login.get("phone_on_file"), bool(login.get("totp_enrolled")))

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        self.checked.append((principal, code, window))
        return totp_step(TOTP_SECRET, code, at, window)  # the backend's own secret, never the core's


def _login_with_contact(conn: sa.Connection, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
    result = dict(ledger.identify(conn, params, ctx))
    return {**result, "phone_on_file": "+15550007777", "totp_enrolled": True}


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_login_reply_can_carry_the_contact_and_totp_is_the_providers_answer(env: Env) -> None:
    reg = ledger.registry()
    reg._actions["identify"] = DbAction("identify", _login_with_contact, secret_params=frozenset({"pin"}),
                                        authenticates=True)
    provider = LoginReplyIdentity()
    gate = _services(env, provider, reg).gate(env.gate().binding)
    login(gate)
    rid = confirmed_request(gate)
    assert gate.request_state(rid) == "confirmed"
    gate.send_challenge(rid, "sms")
    assert env.fake.messages[-1].to == "+15550007777"  # the number the login reply named
    rid2 = confirmed_request(gate)
    gate.send_challenge(rid2, "totp")
    code = pyotp.TOTP(TOTP_SECRET).at(env.clock())
    assert gate.verify_code(rid2, code, say("c", kind="dtmf")).ok
    assert provider.checked == [("alice", code, 1)]  # policy.totp_valid_window reaches the provider
    rid3 = confirmed_request(gate)
    gate.send_challenge(rid3, "totp")
    # Single use is the core's: the provider says yes again, the core's totp_used_steps says no.
    assert gate.verify_code(rid3, code, say("c", kind="dtmf")).reason == "code_already_used"


class FailingIdentity:
    def __init__(self, contact: Contact | None = None, error: Exception | None = None) -> None:
        self._contact, self.error = contact, error

    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        if self._contact is None:
            raise self.error or IdentityUnavailable("the account system did not answer")
        return self._contact

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        raise self.error or IdentityUnavailable("the account system did not answer")


@pytest.mark.parametrize("error", [IdentityUnavailable("timed out"), RuntimeError("a bug in the plugin")])
def test_a_provider_that_cannot_say_where_codes_go_refuses_high_actions_not_the_call(env: Env,
                                                                                     error: Exception) -> None:
    gate = _services(env, FailingIdentity(error=error)).gate(env.gate().binding)
    login(gate)
    _, d = gate.decide(transfer())
    assert not d.allowed and "no_out_of_band_channel" in d.reasons
    req, d = gate.decide(ActionRequest("balance", {}, "low", say("balance")))
    assert d.allowed and gate.execute(req.request_id).ok  # the low path goes on
    (row,) = [r for r in AuditTrail(env.engine).rows() if r.kind == "policy.identity_unavailable"]
    assert row.payload_obj()["error"] == type(error).__name__
    assert "timed out" not in row.payload and "a bug" not in row.payload  # the provider's text is not trusted


def test_a_totp_check_the_provider_cannot_answer_costs_the_caller_no_try(env: Env) -> None:
    provider = FailingIdentity(Contact("bob", None, totp_enrolled=True))
    gate = _services(env, provider).gate(env.gate().binding)
    login(gate, account="333", pin="4321", principal="bob")
    rid = confirmed_request(gate, transfer(payee="111", text="transfer"))
    gate.send_challenge(rid, "totp")
    code = pyotp.TOTP(TOTP_SECRET).at(env.clock())
    for _ in range(6):  # more than policy.code_max_attempts: none of them is counted
        res = gate.verify_code(rid, code, say("c", kind="dtmf"))
        assert not res.ok and res.reason == "identity_unavailable" and not res.locked
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CodeFailure)).scalar_one() == 0
    assert not env.flags.is_flagged("bob")
    provider.error = None
    provider.verify_totp = lambda principal, code, at, window: totp_step(TOTP_SECRET, code, at, window)  # type: ignore[method-assign]
    assert gate.verify_code(rid, code, say("c", kind="dtmf")).ok


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_step_outside_the_policy_window_is_no_match(env: Env) -> None:
    class Lenient(LoginReplyIdentity):
        def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
            return totp_step(TOTP_SECRET, code, at, 5)  # a backend that allows far more drift than the policy

    reg = ledger.registry()
    reg._actions["identify"] = DbAction("identify", _login_with_contact, secret_params=frozenset({"pin"}),
                                        authenticates=True)
    gate = _services(env, Lenient(), reg).gate(env.gate().binding)
    login(gate)
    rid = confirmed_request(gate)
    gate.send_challenge(rid, "totp")
    stale = pyotp.TOTP(TOTP_SECRET).at(env.clock() - dt.timedelta(seconds=120))
    if stale != pyotp.TOTP(TOTP_SECRET).at(env.clock()):
        assert gate.verify_code(rid, stale, say("c", kind="dtmf")).reason == "wrong_code"


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_without_an_identity_provider_no_code_can_be_sent(env: Env) -> None:
    gate = _services(env, None).gate(env.gate().binding)
    login(gate)
    _, d = gate.decide(transfer())
    assert not d.allowed and "no_out_of_band_channel" in d.reasons
    req, d = gate.decide(ActionRequest("balance", {}, "low", say("balance")))
    assert gate.execute(req.request_id).ok


def test_a_login_by_someone_else_forgets_the_first_contact(env: Env) -> None:
    gate = env.gate()
    login(gate)
    login(gate, account="333", pin="4321", principal="bob")
    _, d = gate.decide(transfer(payee="111", text="transfer"))
    assert d.channels == ("totp", "sms")  # bob's, not alice's
    gate.binding_changed(None, "hangup")
    assert gate.contacts.get("bob") is None and gate.contacts.get("alice") is None


def test_flags_are_the_cores_and_a_person_clears_them(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = env.gate()
    login(gate)
    env.flags.flag("alice", "fraud team review", call_id="call-0")
    _, d = gate.decide(transfer())
    assert not d.allowed and "account_flagged" in d.reasons
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", env.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    listed = runner.invoke(cli, ["flags", "list"])
    assert listed.exit_code == 0 and "alice: fraud team review" in listed.output and "call-0" in listed.output
    assert runner.invoke(cli, ["flags", "clear", "alice"]).exit_code == 2  # --by is required
    cleared = runner.invoke(cli, ["flags", "clear", "alice", "--by", "ops@example", "--reason", "checked"])
    assert cleared.exit_code == 0, cleared.output
    assert "1 flag(s) cleared" in cleared.output
    _, d = gate.decide(transfer())
    assert d.allowed
    (row,) = [r for r in AuditTrail(env.engine).rows() if r.kind == "policy.flag_cleared"]
    assert row.payload_obj()["by"] == "ops@example"
    with env.engine.connect() as conn:
        kept = conn.execute(sa.select(PrincipalFlag.cleared_by)).scalars().all()
    assert kept == ["ops@example"]  # cleared, not deleted
    assert runner.invoke(cli, ["flags", "list"]).output.strip() == "no flags"
    assert "cleared" in runner.invoke(cli, ["flags", "list", "--all", "alice"]).output


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_wrong_codes_flag_in_the_core_table(env: Env) -> None:
    gate = env.gate()
    login(gate)
    rid = confirmed_request(gate)
    gate.send_challenge(rid, "sms")
    wrong = "000000" if env.last_code() != "000000" else "111111"
    while not gate.verify_code(rid, wrong, say("c", kind="dtmf")).locked:
        pass
    (flag,) = PrincipalFlags(env.engine).list("alice")
    assert flag.reason == "too_many_wrong_codes" and flag.call_id == "call-1"
    assert [m.to for m in env.fake.messages] == [ALICE_PHONE]


# ------------------------------------------------------------------------------------------ choosing one


@pytest.fixture
def two_identity_plugins(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from tests.support.plugins import fake_distribution

    fake_distribution(tmp_path, monkeypatch, "acme", identity=True)
    yield


def test_which_identity_provider(two_identity_plugins: None) -> None:
    s = Settings()
    assert enabled_identity(s, None) is None  # nothing enabled: no provider
    s.plugins.enabled = ["acme"]
    provider = enabled_identity(s, None)
    assert provider is not None and isinstance(provider, IdentityProvider)
    s.plugins.enabled = ["demo", "acme"]
    with pytest.raises(ConfigError, match=r"several enabled plugins have an identity provider \(demo, acme\)"):
        enabled_identity(s, None)
    s.plugins.identity = "acme"
    assert type(enabled_identity(s, None)).__name__ == "AcmeIdentity"
    s.plugins.identity = "nope"
    with pytest.raises(ConfigError, match=r"plugins\.identity is 'nope', which plugins\.enabled does not list"):
        enabled_identity(s, None)
    s.plugins.enabled, s.plugins.identity = ["demo"], ""
    with pytest.raises(ConfigError, match="needs the database"):
        enabled_identity(s, None)


def test_an_identity_factory_that_makes_the_wrong_thing_is_one_line(two_identity_plugins: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import acme_ivr  # type: ignore[import-not-found]

    monkeypatch.setattr(acme_ivr, "identity", lambda settings, engine: object())
    s = Settings()
    s.plugins.enabled = ["acme"]
    with pytest.raises(PluginError, match=r"plugin 'acme' \(voiceivr.identity = acme_ivr:identity\): made a "
                                          r"object, which lacks contact\(\) or verify_totp\(\)"):
        enabled_identity(s, None)
