#!/usr/bin/env python3
"""How long one audit append takes, committed, on a scratch SQLite file and a scratch PostgreSQL database.

An append happens several times per safe-path turn (decision, read-back, code, intent, result), so its latency
is part of the turn's. Each append is timed from the call to its commit (``AuditTrail.append``); the trail is
then verified so a fast but broken append cannot pass. With the keyed chain the run also writes automatic
signed checkpoints (every ``--every-rows`` rows and ``--every-s`` seconds) to a scratch file, as a worker does.

    .venv/bin/python scripts/bench_audit.py [--rows 2000] [--postgres postgresql+psycopg://postgres@127.0.0.1/test]

The PostgreSQL URL names a server and a database the user may CREATE DATABASE from; a scratch database is made
and dropped (default: $VOICEIVR_TEST_POSTGRES_URL; none: SQLite only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.audit.chain import AuditTrail  # noqa: E402
from voiceivr.db import migrate  # noqa: E402
from voiceivr.db.engine import make_engine, scratch_postgres  # noqa: E402

PAYLOAD = {
    "request_id": "r-" + "0" * 30,
    "action": "transfer_funds",
    "params": {"amount": 90000, "to": "mom", "from": "checking"},
    "evidence": {"source": "speech", "text": "transfer nine hundred dollars to mom", "confidence": 0.93},
    "reasons": ["high_action", "amount"],
}


def _bind(engine: sa.Engine, sink: Path, every_rows: int, every_s: float) -> str:
    """The keyed chain (when this code has it): a scratch key and checkpoint file, as a worker is configured."""
    try:
        from voiceivr.audit.config import AuditConfig, bind
        from voiceivr.audit.keys import Keyring
    except ImportError:
        return "plain SHA-256 chain"
    keyring = Keyring.from_secrets(["bench-audit-key-" + "k" * 40])
    bind(engine, AuditConfig(keyring=keyring, checkpoint_file=sink, every_rows=every_rows,
                             every_s=every_s))
    return f"keyed chain, checkpoints every {every_rows} rows / {every_s:g} s"


def run(url: str, rows: int, tmp: Path, every_rows: int, every_s: float) -> tuple[str, list[float]]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    label = _bind(engine, tmp / f"checkpoints-{engine.dialect.name}.jsonl", every_rows, every_s)  # one per trail
    trail = AuditTrail(engine)
    for i in range(20):  # warm the pool, the statement cache and the key
        trail.append("bench.warmup", {"i": i})
    times = []
    for i in range(rows):
        t0 = time.perf_counter()
        trail.append("policy.decide", {**PAYLOAD, "i": i}, actor="system", call_id=str(uuid.uuid4()))
        times.append((time.perf_counter() - t0) * 1000)
    flush = getattr(trail, "flush_checkpoints", None)
    if flush is not None:
        flush()
    report = trail.verify()
    if not report.ok:
        raise SystemExit(f"the trail does not verify: {report.summary()}")
    engine.dispose()
    return label, times


def _quote(name: str, label: str, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    return (f"{name:<10} {label:<48} n={len(times):<5} median {statistics.median(times):6.3f} ms  "
            f"p95 {p95:6.3f} ms  max {times[-1]:7.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--postgres", default=os.environ.get("VOICEIVR_TEST_POSTGRES_URL", ""))
    ap.add_argument("--every-rows", type=int, default=100)
    ap.add_argument("--every-s", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="voiceivr-bench-audit-") as tmp:
        label, times = run(f"sqlite:///{tmp}/bench.sqlite3", args.rows, Path(tmp), args.every_rows, args.every_s)
        print(_quote("sqlite", label, times))
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            try:
                with scratch_postgres(admin, "voiceivr_bench_") as url:
                    label, times = run(url, args.rows, Path(tmp), args.every_rows, args.every_s)
                    print(_quote("postgresql", label, times))
            finally:
                admin.dispose()


if __name__ == "__main__":
    main()
