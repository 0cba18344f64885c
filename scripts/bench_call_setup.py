#!/usr/bin/env python3
"""Call setup time: INVITE sent -> call answered with media flowing, measured at the caller.

    .venv/bin/python scripts/bench_call_setup.py [--calls 30] [--write docs/benchmarks.md]

Places ``--calls`` sequential calls (each held 0.3 s) to `voiceivr serve` on 127.0.0.1, once with one worker
on the port and once behind Kamailio with 2 workers, using the caller side of the SIP edge in a second
process. The call handler is a minimal one defined here (answers, plays nothing). Shared 2-core machine:
figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_media_gaps import free_port, write_section  # noqa: E402


class Silent:
    """Benchmark handler: answers and keeps reading until the call ends."""

    def __init__(self, settings: Any) -> None:
        pass

    def start(self, info: Any, media: Any, control: Any) -> Any:
        import threading

        def drain() -> None:
            while not (media.read(timeout=0.5) is None and media.closed):
                pass

        threading.Thread(target=drain, daemon=True).start()
        return self

    def on_dtmf(self, digit: str, method: str) -> None: ...
    def on_media_moved(self, new_address: Any) -> None: ...
    def on_dialog_replaced(self, reason: str) -> None: ...
    def on_remote_hangup(self) -> None: ...


def caller(uri: str, calls: int) -> None:
    from voiceivr.settings import SipSettings
    from voiceivr.sim.callers.sip import CallerPlan, CallerReport, CallerScript
    from voiceivr.telephony.edge import EdgeConfig, SipEdge

    edge = SipEdge(EdgeConfig(sip=SipSettings(), host="127.0.0.1", port=0, max_calls=1, name="bench"), None)
    edge.start()
    setups = []
    try:
        for _ in range(calls):
            report = CallerReport(uri=uri)
            script = CallerScript(CallerPlan(duration_s=0.3), report, time.monotonic())
            try:
                slot = edge.make_call(uri, script)
            except Exception as exc:  # e.g. pjsua has not freed the previous call's slot yet
                print(f"call failed: {exc}; retrying", file=sys.stderr)
                time.sleep(0.3)
                slot = edge.make_call(uri, script)
            slot.ended.wait(10)
            script.done.wait(2)
            if report.setup_s is not None:
                setups.append(report.setup_s)
            time.sleep(0.05)
    finally:
        edge.stop()
    print(json.dumps(setups))


def run(mode: str, calls: int) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-setup-{mode}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEIVR_")}
    env.update({"PYTHONPATH": f"{ROOT / 'scripts'}{os.pathsep}{ROOT}",
                "VOICEIVR_SIP_HANDLER": "bench_call_setup:Silent", "VOICEIVR_SIP_KAMAILIO": mode,
                "VOICEIVR_SIP_NAMESERVERS": "127.0.0.1", "VOICEIVR_RECORDING_ENABLED": "false",
                # every bench call comes from 127.0.0.1: the per-source limits would refuse most of them
                "VOICEIVR_SIP_SOURCE_MAX_CALLS": "0", "VOICEIVR_SIP_SOURCE_MAX_INVITES": "0",
                "VOICEIVR_PATHS_VAR_DIR": str(tmp / "var"), "VOICEIVR_CONFIG": str(tmp / "none.toml")})
    (tmp / "none.toml").write_text("")
    log = (tmp / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "voiceivr", "serve", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", "2"], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"serving SIP" not in (tmp / "serve.log").read_bytes():
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((tmp / "serve.log").read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(2.5)  # Kamailio's first pings mark both workers up
        out = subprocess.run([sys.executable, __file__, "--caller", f"sip:bench@127.0.0.1:{port}", str(calls)],
                             env=env, capture_output=True, text=True, timeout=calls * 3 + 60)
        if out.returncode:
            raise SystemExit(f"caller failed:\n{out.stderr[-3000:]}")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return [float(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--caller":
        caller(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    lines = ["| path | calls answered | median setup | p95 | max |", "|---|---|---|---|---|"]
    for mode, label in (("no", "caller -> worker (no Kamailio)"), ("yes", "caller -> Kamailio -> worker")):
        setups = sorted(run(mode, args.calls))
        p95 = setups[min(len(setups) - 1, int(0.95 * len(setups)))]
        lines.append(f"| {label} | {len(setups)} of {args.calls} | {statistics.median(setups) * 1000:.1f} ms | "
                     f"{p95 * 1000:.1f} ms | {setups[-1] * 1000:.1f} ms |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(args.write, "python scripts/bench_call_setup.py " + " ".join(sys.argv[1:]),
                      "Sequential calls over 127.0.0.1; setup = INVITE sent until the caller's handler starts "
                      "(200 OK received and media flowing).\n\n" + table,
                      title="## SIP call setup (scripts/bench_call_setup.py)")


if __name__ == "__main__":
    main()
