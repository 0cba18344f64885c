"""Building the safe path for a process (once) and for each call (a gate)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from voiceivr.actions.effects import RunnerRegistry
from voiceivr.actions.runner import ActionRunner, RecoveryReport
from voiceivr.audit.chain import AuditTrail
from voiceivr.policy.codes import CodeBook
from voiceivr.policy.flags import PrincipalFlags
from voiceivr.policy.gate import SessionBinding
from voiceivr.policy.identity import IdentityProvider
from voiceivr.policy.lockout import LockoutRules
from voiceivr.policy.rules import Policy
from voiceivr.policy.safepath import SafePathGate
from voiceivr.policy.secret import server_secret
from voiceivr.policy.sms import SmsSender, twilio_client
from voiceivr.settings import Settings

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SafePathServices:
    """What all calls of a process share: policy, runner, code book, SMS sender, identity provider, flags."""

    policy: Policy
    runner: ActionRunner
    codebook: CodeBook
    identity: IdentityProvider | None
    flags: PrincipalFlags
    audit: AuditTrail
    sms: SmsSender | None
    clock: Clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        registry: RunnerRegistry | ActionRunner,
        identity: IdentityProvider | None,
        *,
        clock: Clock | None = None,
        sms: SmsSender | None = None,
    ) -> SafePathServices:
        """``sms``: pass a sender to override the one built from settings (None and no Twilio settings:
        SMS is not offered; TOTP still is). ``identity``: who answers for principals (the enabled plugin's,
        :func:`voiceivr.policy.identity.enabled_identity`); None: no code can be sent, so high actions are refused."""
        ps = settings.policy
        LockoutRules.from_settings(ps)  # a bad back-off is a start-up error, not one in a caller's login
        clock = clock or _utcnow
        secret = server_secret(settings)
        runner = registry if isinstance(registry, ActionRunner) else ActionRunner(
            engine, registry, node=ps.runner_node, lease_s=ps.runner_lease_s, clock=clock, secret=secret)
        if sms is None and ps.twilio_account_sid:
            sms = SmsSender(engine, twilio_client(ps), ps.sms_from, max_attempts=ps.sms_max_attempts,
                            backoff_s=ps.sms_backoff_s, clock=clock)
        codebook = CodeBook(engine, secret, clock=clock, ttl_s=ps.code_ttl_s, max_attempts=ps.code_max_attempts,
                            digits=ps.code_digits, totp_window=ps.totp_valid_window,
                            window_s=ps.code_window_s, daily_max=ps.code_daily_max)
        return cls(Policy.from_settings(ps), runner, codebook, identity, PrincipalFlags(engine), AuditTrail(engine),
                   sms, clock)

    def start(self, *, sms_thread: bool = True) -> RecoveryReport:
        """At process start: settle runs a crash left behind, then start delivering SMS in the background."""
        report = self.runner.recover()
        if self.sms is not None and sms_thread:
            self.sms.start()
        return report

    def stop(self) -> None:
        if self.sms is not None:
            self.sms.stop()

    def gate(self, binding: SessionBinding) -> SafePathGate:
        return SafePathGate(binding=binding, policy=self.policy, runner=self.runner, codebook=self.codebook,
                            identity=self.identity, flags=self.flags, audit=self.audit, sms=self.sms,
                            clock=self.clock)
