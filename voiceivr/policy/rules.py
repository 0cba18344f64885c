"""Which path an action takes: the dialplan's risk level, raised (never lowered) by policy rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voiceivr.policy.gate import Risk
from voiceivr.settings import PolicySettings


@dataclass(frozen=True)
class Classification:
    risk: Risk
    reasons: tuple[str, ...]
    malformed: str = ""  # non-empty: the request cannot be judged (e.g. an amount that is not whole cents)


@dataclass(frozen=True)
class Policy:
    """Frozen at start-up from settings. Nothing a caller says reaches it: no method takes text."""

    high_actions: frozenset[str]
    amount_params: tuple[str, ...]
    high_amount_cents: int
    destination_params: tuple[str, ...]
    confirm_min_confidence: float

    @classmethod
    def from_settings(cls, s: PolicySettings) -> Policy:
        return cls(
            high_actions=frozenset(s.high_actions),
            amount_params=tuple(s.amount_params),
            high_amount_cents=max(1, s.high_amount_cents),
            destination_params=tuple(s.destination_params),
            confirm_min_confidence=s.confirm_min_confidence,
        )

    def classify(self, action: str, params: Mapping[str, Any], declared: str) -> Classification:
        reasons: list[str] = []
        if declared == "high":
            risk: Risk = "high"
            reasons.append("dialplan:high")
        elif declared == "low":
            risk = "low"
        else:
            risk = "high"  # an unknown level is treated as the strictest one
            reasons.append(f"dialplan:unknown_risk:{declared}")
        if action in self.high_actions and risk != "high":
            risk = "high"
            reasons.append("policy:high_action")
        for name in self.amount_params:
            if name not in params:
                continue
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, int):
                return Classification("high", (*reasons, f"policy:amount_not_cents:{name}"), malformed=name)
            if value < 0:
                return Classification("high", (*reasons, f"policy:negative_amount:{name}"), malformed=name)
            if value >= self.high_amount_cents and risk != "high":
                risk = "high"
                reasons.append(f"policy:amount>={self.high_amount_cents}")
        return Classification(risk, tuple(reasons))

    def describe(self, action: str, params: Mapping[str, Any]) -> str:
        """Short wording of what the code confirms, for the SMS ("transfer $50.00 to savings")."""
        parts = [action.replace("_", " ")]
        for name in self.amount_params:
            value = params.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                parts.append(f"${value // 100:,}.{value % 100:02d}")
        for name in self.destination_params:
            if name in params:
                parts.append(f"to {str(params[name])[:40]}")
        return " ".join(parts)
