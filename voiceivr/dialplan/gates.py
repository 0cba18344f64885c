"""Which :class:`~voiceivr.policy.gate.CallGate` a text simulation uses.

The real gate (policy, out-of-band codes, write-ahead audit, idempotent runner) lives in
:mod:`voiceivr.policy` and is built by its factory ``voiceivr.policy.make_gate``. :func:`gate_for` calls
that factory when it exists. Until then it returns :class:`~voiceivr.policy.lowrisk.LowRiskOnlyGate`, which
runs low-risk actions and *refuses every high-risk one* with a reason saying why: a simulation must never
pretend that a money transfer was authorised.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

from voiceivr.actions.registry import ActionRegistry
from voiceivr.policy.gate import SessionBinding
from voiceivr.policy.lowrisk import LowRiskOnlyGate

log = logging.getLogger(__name__)


def gate_for(registry: ActionRegistry, db: Engine | None, binding: SessionBinding, **kwargs: Any) -> Any:
    """The real gate from ``voiceivr.policy.make_gate`` if this build has it, else :class:`LowRiskOnlyGate`."""
    try:
        from voiceivr.policy import make_gate
    except ImportError:
        log.info("safe path not available; high-risk actions will be refused", extra={"call_id": binding.call_id})
        return LowRiskOnlyGate(registry, db, binding)
    return make_gate(registry=registry, db=db, binding=binding, **kwargs)
