"""The safe path: risk policy, session binding, confirmation, out-of-band codes, injection filter.

The interface the dialplan engine codes against is :mod:`voiceivr.policy.gate`; :func:`make_gate` builds
the implementation (:class:`voiceivr.policy.safepath.SafePathGate`). Imports are lazy so that importing the
interface does not pull in the database, twilio and pyotp.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

    from voiceivr.actions.effects import RunnerRegistry
    from voiceivr.actions.registry import ActionRegistry
    from voiceivr.actions.runner import ActionRunner
    from voiceivr.policy.gate import CallGate, SessionBinding
    from voiceivr.policy.identity import IdentityProvider
    from voiceivr.policy.sms import SmsSender
    from voiceivr.settings import Settings

log = logging.getLogger(__name__)


def make_gate(
    settings: Settings | None = None,
    engine: Engine | None = None,
    binding: SessionBinding | None = None,
    runner: ActionRunner | RunnerRegistry | ActionRegistry | None = None,
    identity: IdentityProvider | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    *,
    registry: ActionRunner | RunnerRegistry | ActionRegistry | None = None,
    db: Engine | None = None,
    sms: SmsSender | None = None,
    **_ignored: Any,
) -> CallGate:
    """One gate for one call.

    ``runner``/``registry``: an :class:`~voiceivr.actions.runner.ActionRunner`, runner actions, or the
    dialplan's :class:`~voiceivr.actions.registry.ActionRegistry` (adapted). ``engine``/``db``: the database.
    ``identity``: defaults to the enabled plugins' identity provider (``plugins.identity``). Without a database
    there is no audit trail and so no safe path: the low-risk-only gate (policy.lowrisk) is returned (high actions
    refused, never faked).

    A server should build :class:`~voiceivr.policy.services.SafePathServices` once (it recovers crashed runs
    and runs the SMS sender in the background) and call ``services.gate(binding)`` per call; this shortcut
    builds the services each time (simulations, tests, one-off tools).
    """
    from voiceivr.actions.effects import RunnerRegistry
    from voiceivr.actions.registry import ActionRegistry as DialplanRegistry
    from voiceivr.settings import load_settings

    engine = engine or db
    actions = runner or registry
    if binding is None:
        raise TypeError("make_gate needs the call's SessionBinding")
    if actions is None:
        from voiceivr.actions.catalog import plugin_registry

        actions = plugin_registry(settings)
    if engine is None:
        if not isinstance(actions, DialplanRegistry):
            raise TypeError("make_gate without a database needs the dialplan's ActionRegistry")
        from voiceivr.policy.lowrisk import LowRiskOnlyGate

        log.warning("no database: no audit trail, so no safe path; high-risk actions will be refused",
                    extra={"call_id": binding.call_id})
        return LowRiskOnlyGate(actions, None, binding)
    settings = settings or load_settings()[0]
    if isinstance(actions, DialplanRegistry):
        actions = RunnerRegistry.from_actions(actions, engine, clock, settings.policy)
    if identity is None:
        from voiceivr.policy.identity import enabled_identity

        identity = enabled_identity(settings, engine)
    from voiceivr.policy.services import SafePathServices

    return SafePathServices.from_settings(settings, engine, actions, identity, clock=clock, sms=sms).gate(binding)
