"""The plots of the stats page, as SVG drawn on the server: bars whose sizes are computed here, so the page
needs no script and no chart library (and the Content-Security-Policy stays 'self' only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from voiceivr.call.budget import STAGES
from voiceivr.settings import BudgetSettings

WIDTH = 640  # the plotting area, in SVG units; labels take LABEL_W more on the left
LABEL_W = 110
ROW_H = 34


@dataclass(frozen=True)
class Bar:
    y: float
    width: float
    label: str  # the figure written at the bar's end
    kind: str  # p50 | p95 | count: picks the colour in the template


@dataclass(frozen=True)
class Row:
    name: str
    y: float
    bars: list[Bar]
    marker_x: float | None = None  # the stage's budget
    marker_label: str = ""


@dataclass(frozen=True)
class Chart:
    title: str
    rows: list[Row]
    height: float
    width: float = WIDTH + LABEL_W + 90
    label_w: float = LABEL_W


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def latency_chart(stats: dict[str, Any], budgets: BudgetSettings) -> Chart:
    """p50 and p95 per stage, against the stage's budget (a vertical mark)."""
    stages = stats.get("stages", {})
    top = max([budgets.of(s) for s in STAGES] +
              [v for s in STAGES for v in (_finite(stages.get(s, {}).get("p95")),) if v is not None])
    scale = WIDTH / top if top > 0 else 0.0
    rows = []
    for i, stage in enumerate(STAGES):
        y = i * ROW_H
        bars = []
        for j, q in enumerate(("p50", "p95")):
            v = _finite(stages.get(stage, {}).get(q))
            if v is not None:
                bars.append(Bar(y + 4 + j * 13, max(1.0, v * scale), f"{q} {v:.0f} ms", q))
        count = stages.get(stage, {}).get("count", 0)
        rows.append(Row(f"{stage} ({count})", y, bars, budgets.of(stage) * scale, f"budget {budgets.of(stage):.0f}"))
    return Chart("Latency per stage (ms): p50, p95 and the budget", rows, len(STAGES) * ROW_H)


def outcome_chart(stats: dict[str, Any]) -> Chart:
    outcomes: dict[str, int] = stats.get("outcomes", {})
    top = max(outcomes.values(), default=0)
    rows = [Row(name, i * ROW_H, [Bar(i * ROW_H + 6, max(1.0, n * WIDTH / top), str(n), "count")])
            for i, (name, n) in enumerate(sorted(outcomes.items(), key=lambda kv: -kv[1]))]
    return Chart("Calls by outcome", rows, max(1, len(rows)) * ROW_H)
