"""The abuse simulation's scorecard: :func:`simulate` runs the catalogue in one world and scores it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voiceivr.audit.chain import AuditTrail
from voiceivr.sim.abuse.call import run_scenario
from voiceivr.sim.abuse.catalogue import catalogue
from voiceivr.sim.abuse.world import ScenarioResult, world

# --------------------------------------------------------------------------------------------- scorecard


@dataclass
class Scorecard:
    results: list[ScenarioResult]
    database: str
    audit_ok: bool
    tiers: tuple[int, ...] = ()
    wall_s: float = 0.0

    @property
    def attacks(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.kind == "attack"]

    @property
    def legit(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.kind == "legit"]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results) and self.audit_ok

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "attacks_blocked": sum(r.passed for r in self.attacks),
            "attacks": len(self.attacks),
            "legit_passed": sum(r.passed for r in self.legit),
            "legit": len(self.legit),
            "audit_chain_intact": self.audit_ok,
            "database": self.database,
            "router_tiers": list(self.tiers),
            "wall_seconds": round(self.wall_s, 2),
            "scenarios": [{**{k: v for k, v in asdict(r).items() if k != "steps"},
                           "steps": [{**asdict(s), "as_expected": s.as_expected} for s in r.steps]}
                          for r in self.results],
        }

    def text(self) -> str:
        lines = [f"{'scenario':<36} {'kind':<6} {'via':<4} {'result':<6} {'call s':>6} {'audit':>5} {'refused':>7} "
                 f"{'sms':>3}  detail"]
        for r in self.results:
            mark = "ok" if r.passed else "FAIL"
            lines.append(f"{r.name:<36} {r.kind:<6} {r.via:<4} {mark:<6} {r.call_seconds:>6.1f} {r.audit_rows:>5} "
                         f"{r.refusals:>7} {r.sms_sent:>3}  {r.verdict}")
        lines.append("")
        lines.append(f"attacks blocked: {sum(r.passed for r in self.attacks)}/{len(self.attacks)}   "
                     f"legitimate flows passed: {sum(r.passed for r in self.legit)}/{len(self.legit)}   "
                     f"audit chain: {'intact' if self.audit_ok else 'BROKEN'}   "
                     f"({sum(r.call_seconds for r in self.results):.0f} s of calls in {self.wall_s:.1f} s)")
        return "\n".join(lines)


def simulate(database_url: str | None = None, only: list[str] | None = None,
             tiers: Sequence[int] = (0, 1, 2)) -> Scorecard:
    """Run the catalogue. Without ``database_url``: a scratch SQLite database, removed afterwards."""
    t0 = time.perf_counter()
    scenarios = [s for s in catalogue() if not only or s.name in only]
    with tempfile.TemporaryDirectory(prefix="voiceivr-abuse-") as tmp:
        url = database_url or f"sqlite:///{tmp}/abuse.sqlite3"
        with world(url, Path(tmp), tiers, own_key=database_url is None) as w:
            results = [run_scenario(w, sc) for sc in scenarios]
            audit_ok = AuditTrail(w.engine).verify().ok
    shown = "scratch SQLite (removed)" if database_url is None else database_url.split("@")[-1]
    return Scorecard(results, shown, audit_ok, tuple(tiers), time.perf_counter() - t0)


def scorecard_json(card: Scorecard) -> str:
    return json.dumps(card.as_json(), indent=2, sort_keys=True)
