#!/usr/bin/env python3
"""What an HTTP backend action adds to a turn: the tool stage (the runner's write-ahead intent row, the signed
request, the reply checked against its declared fields, the result row) against a backend on 127.0.0.1 that
answers in ``--delay-ms`` (20 by default), on a scratch SQLite file and a scratch PostgreSQL database.

    .venv/bin/python scripts/bench_webhook.py [--runs 300] [--delay-ms 20] [--postgres URL]

Reported per database: the backend's own time (the server's sleep), the HTTP request alone (sign, connect,
send, read, parse) and the whole tool stage (``ActionRunner.run``, as ``gate.execute`` calls it). The goal
(issue 15): a 20 ms backend adds at most 30 ms to the turn, i.e. the tool stage p95 <= 20 + 30 ms.
The PostgreSQL URL names a server the user may CREATE DATABASE on (default: $VOICEIVR_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.actions.backends import parse_backends  # noqa: E402
from voiceivr.actions.effects import RunnerRegistry  # noqa: E402
from voiceivr.actions.registry import Action, ActionContext, ActionRegistry, Param  # noqa: E402
from voiceivr.actions.runner import ActionRunner  # noqa: E402
from voiceivr.actions.webhooks import Backend, build_actions, verify  # noqa: E402
from voiceivr.audit.config import bind, release, scratch_config  # noqa: E402
from voiceivr.db import migrate  # noqa: E402
from voiceivr.db.engine import make_engine, scratch_postgres  # noqa: E402

SECRET = "bench-webhook-secret-" + "x" * 32


@contextmanager
def backend(delay_s: float) -> Iterator[str]:
    """A backend that verifies the signature, sleeps ``delay_s`` and answers the declared fields."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify(SECRET.encode(), body, self.headers.get("Voiceivr-Signature", ""))
            time.sleep(delay_s)
            reply = json.dumps({"balance": 150_25, "account": "checking"} if ok else {"error": "bad signature"})
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def registry(url: str) -> ActionRegistry:
    spec = parse_backends(f"""\
backends:
  core: {{url: "{url}", secret: {{env: BENCH_SECRET}}, timeout_s: 2, retries: 0}}
actions:
  get_balance:
    backend: core
    risk: low
    params: {{account: str}}
    path: /actions/get_balance
    reply: {{balance: money, account: str}}
""", "bench.yaml", environ={"BENCH_SECRET": SECRET})
    reg = ActionRegistry()
    for a in build_actions(spec, {n: Backend(b) for n, b in spec.backends.items()}):
        reg.register(a)
    # The same answer from a plugin's in-process action: the runner's own cost, without HTTP or a backend.
    reg.register(Action("in_process", "low", (Param("account", "str"),),
                        lambda params, ctx: {"balance": 150_25, "account": "checking"},
                        returns={"balance": "money", "account": "str"}, dedupes=True))
    return reg


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def quote(label: str, xs: list[float]) -> str:
    return f"{label:<40} median {statistics.median(xs):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  max {max(xs):6.1f} ms"


def measure(db_url: str, url: str, runs: int, tmp: Path) -> tuple[list[float], list[float], list[float]]:
    engine = make_engine(db_url)
    bind(engine, scratch_config(tmp))
    migrate.upgrade(engine)
    reg = registry(url)
    runner = ActionRunner(engine, RunnerRegistry.from_actions(reg, engine), node="bench")
    action = reg.get("get_balance")
    http_ms: list[float] = []
    tool_ms: list[float] = []
    local_ms: list[float] = []
    try:
        for i in range(runs + 10):  # the first 10 warm the connection pool and caches
            ctx = ActionContext("bench-call", "c-1", None, dt.datetime.now(dt.UTC), f"h-{uuid.uuid4().hex}")
            t0 = time.perf_counter()
            action.run({"account": "checking"}, ctx)
            t1 = time.perf_counter()
            out = runner.run(key=f"t-{uuid.uuid4().hex}", action="get_balance", params={"account": "checking"},
                             risk="low")
            t2 = time.perf_counter()
            local = runner.run(key=f"l-{uuid.uuid4().hex}", action="in_process", params={"account": "checking"},
                               risk="low")
            t3 = time.perf_counter()
            if not (out.ok and local.ok):
                raise SystemExit(f"a run failed: {out.status} {out.reason} / {local.status} {local.reason}")
            if i >= 10:
                http_ms.append((t1 - t0) * 1000)
                tool_ms.append((t2 - t1) * 1000)
                local_ms.append((t3 - t2) * 1000)
    finally:
        release(engine)
        engine.dispose()
    return http_ms, tool_ms, local_ms


def report(db: str, delay_ms: float, http_ms: list[float], tool_ms: list[float], local_ms: list[float]) -> None:
    print(quote(f"{db}: HTTP request alone", http_ms))
    print(quote(f"{db}: tool stage, HTTP action", tool_ms))
    print(quote(f"{db}: tool stage, in-process action", local_ms))
    print(f"{db}: HTTP over in-process, p95 {pct(tool_ms, 95) - pct(local_ms, 95):5.1f} ms (median "
          f"{statistics.median(tool_ms) - statistics.median(local_ms):5.1f}); over the backend's {delay_ms:g} ms: "
          f"p95 {pct(tool_ms, 95) - pct(local_ms, 95) - delay_ms:5.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--postgres", default=os.environ.get("VOICEIVR_TEST_POSTGRES_URL", ""))
    args = ap.parse_args()
    with backend(args.delay_ms / 1000) as url, tempfile.TemporaryDirectory() as tmp:
        print(f"backend on 127.0.0.1 answering in {args.delay_ms:g} ms; {args.runs} runs each")
        report("sqlite", args.delay_ms, *measure(f"sqlite:///{tmp}/bench.sqlite3", url, args.runs, Path(tmp)))
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            try:
                with scratch_postgres(admin, "bench_webhook_") as pg:
                    report("postgresql", args.delay_ms, *measure(pg, url, args.runs, Path(tmp)))
            finally:
                admin.dispose()


if __name__ == "__main__":
    main()
