"""The abuse simulation's world and its vocabulary: the demo bank in a scratch database with its safe path,
the SMS fake and the bank dialplan (:class:`World`, :func:`world`); what a script may know (:class:`Ctx`); a
:class:`Scenario` and its :class:`ScenarioResult`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyotp
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.actions.effects import RunnerRegistry
from voiceivr.actions.registry import ActionRegistry
from voiceivr.audit.config import bind, release, scratch_config
from voiceivr.call.handler import MediaAddress
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine
from voiceivr.demo import actions as bank
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.demo.identity import DemoIdentity
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter, make_router
from voiceivr.policy.safepath import SafePathGate
from voiceivr.policy.services import SafePathServices
from voiceivr.policy.sms import SmsSender, twilio_client
from voiceivr.settings import PolicySettings, Settings
from voiceivr.sim.callers.simcaller import (
    Act,
    Keys,
    Outside,
)
from voiceivr.sim.twilio_fake import FakeTwilio

BANK_PLAN = Path(__file__).resolve().parents[3] / "dialplans" / "bank.yaml"

# The demo bank's customers (voiceivr.demo.actions.DEMO_CUSTOMERS).
ALICE, ALICE_ACCOUNT, ALICE_PIN, ALICE_PHONE = "c-1001", "10000001", "1234", "+15555550101"
WRONG_CODE = "918273"
BOB, BOB_ACCOUNT, BOB_PIN, BOB_PHONE = "c-1002", "20000001", "4321", "+15555550102"
PHONES = {ALICE: ALICE_PHONE, BOB: BOB_PHONE}
MEDIA = MediaAddress("203.0.113.5", 40000)
STRANGER_MEDIA = "192.0.2.66:5004"  # someone else on the network who found a call's RTP port

# --------------------------------------------------------------------------------------------- the world


class SimClock:
    """The policy's clock (code expiry, TOTP steps). Scenarios jump it; the call's media clock is virtual."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class World:
    """The demo bank in a scratch database, its safe path, the SMS fake, the bank dialplan and its router."""

    engine: Engine
    fake: FakeTwilio
    sender: SmsSender
    services: SafePathServices
    clock: SimClock
    registry: ActionRegistry
    plan: Dialplan
    router: IntentRouter
    tiers: tuple[int, ...]

    def sms_code(self, principal: str) -> str:
        """What the customer reads on their own phone: the newest code sent to the number on file."""
        self.sender.drain_until_settled(timeout_s=15)
        for msg in reversed(self.fake.messages):
            if msg.to == PHONES[principal]:
                m = re.search(r"code (\d+)", msg.body)
                if m:
                    return m.group(1)
        return ""

    def totp_code(self, principal: str) -> str:
        with self.engine.connect() as conn:
            secret = conn.execute(sa.select(bank.customers_t.c.totp_secret)
                                  .where(bank.customers_t.c.id == principal)).scalar_one()
        return pyotp.TOTP(secret).at(self.clock())

    def reset(self) -> None:
        """Scenarios must not leak into each other: a customer flagged by brute force, a blocked card, a day's
        count of wrong codes, a spent balance or a used TOTP step would otherwise decide the next one."""
        self.clock.advance(2 * 24 * 3600)
        for c in bank.DEMO_CUSTOMERS:  # flags are the core's (principal_flags), cleared as a person would
            self.services.flags.clear(c.id, by="abuse simulation", reason="next scenario")
        with self.engine.begin() as conn:
            conn.execute(bank.customers_t.update().values(locked=False, failed_logins=0))
            conn.execute(bank.cards_t.update().values(status="active", blocked_at=None, blocked_reason=None))
            for c in bank.DEMO_CUSTOMERS:
                for number, _kind, cents in c.accounts:
                    conn.execute(bank.accounts_t.update().where(bank.accounts_t.c.number == number)
                                 .values(balance_cents=cents))


@contextmanager
def world(database_url: str, var_dir: Path, tiers: Sequence[int] = (0, 1, 2), *, own_key: bool = True,
          checkpoint_every_rows: int = 100) -> Iterator[World]:
    """``own_key``: a scratch database keys its trail with a key of its own; a database someone will inspect
    uses this process's audit key. Checkpoints go to ``var_dir``, never to the configured checkpoint file."""
    engine = make_engine(database_url)
    bind(engine, scratch_config(var_dir, own_key=own_key, every_rows=checkpoint_every_rows))
    migrate.upgrade(engine, plugins=["demo"])
    bank.seed(engine)
    registry = demo_registry()
    plan = load_file(BANK_PLAN, registry)
    router = make_router(plan, [t for t in tiers if t != 3])
    clock = SimClock()
    settings = Settings()
    settings.paths.var_dir = var_dir
    # Never the configured provider: a simulation must not send real messages.
    with FakeTwilio(hang_s=0.6) as fake:
        ps = PolicySettings(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                            twilio_base_url=fake.base_url, sms_from="+15550000000", sms_timeout_s=0.3)
        settings.policy = ps
        sender = SmsSender(engine, twilio_client(ps), ps.sms_from, backoff_s=0.02)
        runner_actions = RunnerRegistry.from_actions(registry, engine, clock)
        services = SafePathServices.from_settings(settings, engine, runner_actions, DemoIdentity(engine),
                                                  clock=clock, sms=sender)
        services.start(sms_thread=False)
        try:
            yield World(engine, fake, sender, services, clock, registry, plan, router, tuple(tiers))
        finally:
            release(engine)
            engine.dispose()


# --------------------------------------------------------------------------------------------- scenarios


class Ctx:
    """What a script may know: the world (the customer's phone, their authenticator app) and codes an attacker
    saw earlier."""

    def __init__(self, w: World) -> None:
        self.world = w
        self.captured: dict[str, str] = {}

    def sms(self, principal: str, keep: str = "") -> Callable[[], str]:
        def read() -> str:
            code = self.world.sms_code(principal)
            if keep:
                self.captured[keep] = code
            return code + "#"
        return read

    def totp(self, principal: str, keep: str = "") -> Callable[[], str]:
        def read() -> str:
            code = self.world.totp_code(principal)
            if keep:
                self.captured[keep] = code
            return code + "#"
        return read

    def seen(self, label: str) -> Callable[[], str]:
        return lambda: self.captured.get(label, "000000") + "#"

    def capture(self, principal: str, label: str) -> Outside:
        def grab() -> None:
            self.captured[label] = self.world.sms_code(principal)
        return Outside(grab, f"the code arrives on the phone ({label})")


Script = Callable[[Ctx], Sequence[Act]]


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Literal["attack", "legit"]
    description: str
    script: Script | None = None  # a call (via the session, engine and gate)
    gate_script: Callable[[SafePathGate, World], None] | None = None  # not a conversation: drives the gate
    setup: Script | None = None  # an earlier, separate call (e.g. the victim's own transfer)
    caller_id: str = ""  # From / P-Asserted-Identity as presented: never an authenticator
    expect_high: int = 0  # high actions that may (attack) or must (legit) succeed on the call
    forbid_actions: tuple[str, ...] = ()  # attack: low-risk actions that must not succeed on the call either
    expect_actions: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # legit: (action, params subset)
    expect_audit: tuple[str, ...] = ()  # "kind", "kind:reason" (reason/reasons/status), "!kind" (absent)
    expect_sms: int | None = None
    at_rest: Callable[[Ctx], dict[str, str]] | None = None  # after the call: secrets (name -> digits) to look for
    # not a call: an attack on the audit trail in a scratch bank of its own (voiceivr.sim.abuse.trail)
    trail_attack: Callable[[World, Scenario], ScenarioResult] | None = None

    @property
    def via(self) -> str:
        if self.trail_attack is not None:
            return "db"
        return "gate" if self.gate_script is not None else "call"


def login(account: str = ALICE_ACCOUNT, pin: str = ALICE_PIN) -> list[Act]:
    return [Keys(account + "#", expect="slot:account_number"), Keys(pin + "#", expect="slot:pin")]



@dataclass
class StepLog:
    step: str
    at: float
    expected: str
    engine: str
    detail: str = ""

    @property
    def as_expected(self) -> bool:
        return not self.expected or self.expected == self.engine


@dataclass
class ScenarioResult:
    name: str
    kind: str
    via: str
    description: str
    call_id: str
    passed: bool
    verdict: str
    high_executions: int
    audit_rows: int
    refusals: int
    sms_sent: int
    evidence: list[str] = field(default_factory=list)
    steps: list[StepLog] = field(default_factory=list)
    call_seconds: float = 0.0
