"""The safe path: risk policy, session binding, confirmation, out-of-band codes, injection filter.

The interface the dialplan engine codes against is :mod:`voiceivr.policy.gate`; :func:`make_gate` builds
the implementation (:class:`voiceivr.policy.safepath.SafePathGate`). Imports are lazy so that importing the
interface does not pull in the database, twilio and pyotp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

    from voiceivr.actions.runner import ActionRegistry, ActionRunner
    from voiceivr.policy.directory import Directory
    from voiceivr.policy.gate import SessionBinding
    from voiceivr.policy.safepath import SafePathGate
    from voiceivr.policy.sms import SmsSender
    from voiceivr.settings import Settings


def make_gate(
    settings: Settings,
    engine: Engine,
    binding: SessionBinding,
    runner: ActionRunner | ActionRegistry,
    directory: Directory,
    clock: Callable[[], dt.datetime] | None = None,
    *,
    sms: SmsSender | None = None,
) -> SafePathGate:
    """One gate for one call. A server should build :class:`~voiceivr.policy.services.SafePathServices`
    once (it recovers crashed runs and runs the SMS sender) and call ``services.gate(binding)`` per call;
    this shortcut builds the services each time (tests, simulations, one-off tools)."""
    from voiceivr.policy.services import SafePathServices

    return SafePathServices.from_settings(settings, engine, runner, directory, clock=clock, sms=sms).gate(binding)
