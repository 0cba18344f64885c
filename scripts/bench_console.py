#!/usr/bin/env python3
"""What the console's requests cost: sign-in (argon2), a page, live validation, a simulation, a what-if.

    .venv/bin/python scripts/bench_console.py [--runs 20] [--whatif-calls 2]

A real console (uvicorn on 127.0.0.1) over a scratch SQLite database with the demo bank's dialplan published;
requests from this process over HTTP. The what-if replays copies of tests/fixtures/calls/bank_call.json.
Timings are wall clock on a shared machine: treat them as noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VOICEIVR_PLUGINS_ENABLED", "demo")
os.environ.setdefault("VOICEIVR_AUDIT_KEY", "bench-console-audit-key-0123456789abcdef")

import requests  # noqa: E402

from tests.support.console import BANK, PASSWORDS, recorded_calls, running_console, seed  # noqa: E402
from voiceivr.db import migrate  # noqa: E402
from voiceivr.db.engine import make_engine  # noqa: E402


def timed(fn: Callable[[], requests.Response], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = fn()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code >= 400:
            raise SystemExit(f"{r.request.method} {r.url}: HTTP {r.status_code}: {r.text[:200]}")
    return out


def row(name: str, ms: list[float]) -> str:
    p95 = statistics.quantiles(ms, n=20)[-1] if len(ms) >= 2 else ms[0]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.1f} | {p95:.1f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--whatif-calls", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        os.environ["VOICEIVR_AUDIT_CHECKPOINT_FILE"] = f"{tmp}/checkpoints.jsonl"
        engine = make_engine(f"sqlite:///{tmp}/console.sqlite3")
        migrate.upgrade(engine)
        seed(engine)
        ids = recorded_calls(Path(tmp) / "recordings", args.whatif_calls)
        with running_console(engine, recordings=Path(tmp) / "recordings", free_failures=100) as c:
            s = requests.Session()

            def sign_in() -> requests.Response:
                s.cookies.clear()
                token = re.search(r'name="csrf" value="([^"]+)"', s.get(f"{c.url}/login").text).group(1)  # type: ignore[union-attr]
                return s.post(f"{c.url}/login", data={"csrf": token, "name": "pat", "password": PASSWORDS["pat"]})

            rows = [row("sign in (GET /login, POST: argon2, then /dialplans)", timed(sign_in, args.runs))]
            page = s.get(f"{c.url}/dialplans/bank").text
            csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            h = {"X-CSRF-Token": csrf}
            rows.append(row("GET /dialplans/bank (editor page)", timed(lambda: s.get(f"{c.url}/dialplans/bank"),
                                                                      args.runs)))
            rows.append(row("POST /api/validate (bank.yaml, 20 KB)", timed(
                lambda: s.post(f"{c.url}/api/validate", json={"text": BANK}, headers=h), args.runs)))
            script = "say what's my balance\ndtmf 10000001\ndtmf 1234\nsay savings"
            rows.append(row("POST /api/simulate (4 caller inputs)", timed(
                lambda: s.post(f"{c.url}/api/simulate", json={"text": BANK, "script": script}, headers=h),
                args.runs)))
            draft = BANK.replace("How can I help you today?", "What can I do for you today?")
            rows.append(row(f"POST /api/whatif ({len(ids)} recorded calls, each replayed twice)", timed(
                lambda: s.post(f"{c.url}/api/whatif", json={"text": draft, "name": "bank", "calls": ids},
                               headers=h, timeout=600), max(2, args.runs // 10))))
            rows.append(row("GET /audit (verifies the whole trail)", timed(lambda: s.get(f"{c.url}/audit"), args.runs)))
        engine.dispose()
    print("| request | n | median ms | p95 ms |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
