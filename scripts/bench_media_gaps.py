#!/usr/bin/env python3
"""How evenly a worker sends audio to its other calls while one call does heavy GIL-holding work.

    .venv/bin/python scripts/bench_media_gaps.py [--seconds 8] [--write docs/benchmarks.md]

For each scenario it starts `voiceivr serve` (one worker, no Kamailio) with the small handler below, places
4 calls from a second process, and lets call 1 run a stand-in for a speech engine from 1 s to (seconds-1) s:

- ``none``: no extra work (baseline);
- ``python``: a pure-Python loop (the interpreter offers the GIL to other threads every switch interval),
  with Python's default 5 ms switch interval;
- ``python+1ms``: the same with the workers' default ``sip.gil_switch_interval_ms = 1``;
- ``c-20ms`` / ``c-100ms``: back-to-back C calls that hold the GIL 20 / 100 ms each without ever releasing
  it (``sum(range(n))``), as pocketsphinx does while it decodes;
- ``c-100ms+1ms``: the same with a 1 ms switch interval (it cannot help: C code never offers the GIL).

The figure is the interval between consecutive ``onFrameRequested`` calls of each *other* call, measured
in the worker by the bridge (``frame_gaps`` in each call's recording JSON): 20 ms when the clock thread gets
the GIL on time. The machine is shared and has 2 cores: absolute numbers are noisy, compare rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "none": ("none", 0, 0.005),
    "python": ("python", 0, 0.005),
    "python+1ms": ("python", 0, 0.001),
    "c-20ms": ("c", 20, 0.005),
    "c-100ms": ("c", 100, 0.005),
    "c-100ms+1ms": ("c", 100, 0.001),
}


# ----------------------------------------------------------------------------- the worker's call handler


class HogHandler:
    """Benchmark handler: each call plays a tone; the first call also runs the configured GIL hog."""

    def __init__(self, settings: Any) -> None:
        self.kind = os.environ.get("BENCH_HOG", "none")
        self.slice_ms = int(os.environ.get("BENCH_SLICE_MS", "0"))
        self.seconds = float(os.environ.get("BENCH_SECONDS", "8"))
        sys.setswitchinterval(float(os.environ.get("BENCH_SWITCH", "0.005")))
        self.calls = 0
        self.lock = threading.Lock()

    def start(self, info: Any, media: Any, control: Any) -> Any:
        from voiceivr.call.media import PlayedMark

        with self.lock:
            self.calls += 1
            first = self.calls == 1
        n = media.frame_bytes
        import math

        import numpy as np

        t = np.arange(int(media.rate * self.seconds)) / media.rate
        pcm = (6000 * np.sin(2 * math.pi * 440 * t)).astype("<i2").tobytes()
        for i in range(len(pcm) // n):
            media.play(pcm[i * n:(i + 1) * n], PlayedMark(1, (i + 1) * n // 2, False))
        threading.Thread(target=self._drain, args=(media,), daemon=True).start()
        if first and self.kind != "none":
            threading.Thread(target=self._hog, daemon=True).start()
        return self

    @staticmethod
    def _drain(media: Any) -> None:
        while True:
            frame = media.read(timeout=0.5)
            if frame is None and media.closed:
                return

    def _hog(self) -> None:
        time.sleep(1.0)
        end = time.perf_counter() + self.seconds - 2.0
        if self.kind == "python":
            x = 0
            while time.perf_counter() < end:
                for i in range(1000):
                    x += i * i
        else:
            n = int(self.slice_ms / 11.0 * 1_000_000)  # sum(range(1e6)) takes ~11 ms here
            while time.perf_counter() < end:
                sum(range(n))

    def on_dtmf(self, digit: str, method: str) -> None: ...
    def on_media_moved(self, new_address: Any) -> None: ...
    def on_dialog_replaced(self, reason: str) -> None: ...
    def on_remote_hangup(self) -> None: ...


# --------------------------------------------------------------------------------------------- caller


def caller(uri: str, count: int, seconds: float) -> None:
    """Place ``count`` calls at once and hold them ``seconds`` (runs in its own process)."""
    from voiceivr.settings import SipSettings
    from voiceivr.sim.callers.sip import CallerPlan, CallerReport, CallerScript
    from voiceivr.telephony.edge import EdgeConfig, SipEdge

    edge = SipEdge(EdgeConfig(sip=SipSettings(), host="127.0.0.1", port=0, max_calls=count, name="bench"), None)
    edge.start()
    try:
        slots = []
        for _ in range(count):
            script = CallerScript(CallerPlan(duration_s=seconds), CallerReport(uri=uri), time.monotonic())
            slots.append((edge.make_call(uri, script), script))
        for slot, script in slots:
            slot.ended.wait(seconds + 20)
            script.done.wait(2)
    finally:
        edge.stop()


# ---------------------------------------------------------------------------------------------- driver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def merge(gaps: list[dict[str, float]]) -> dict[str, float]:
    """Pool per-call summaries: medians/p95 are averaged, max is the max, counts add up."""
    if not gaps:
        return {}
    return {
        "calls": len(gaps),
        "frames": sum(g["frames"] for g in gaps),
        "median_ms": round(sum(g["median_ms"] for g in gaps) / len(gaps), 2),
        "p95_ms": round(sum(g["p95_ms"] for g in gaps) / len(gaps), 2),
        "p99_ms": round(max(g["p99_ms"] for g in gaps), 2),
        "max_ms": round(max(g["max_ms"] for g in gaps), 2),
        "over_40ms": sum(g["over_40ms"] for g in gaps),
    }


def run_scenario(name: str, seconds: float) -> dict[str, Any]:
    kind, slice_ms, switch = SCENARIOS[name]
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-gaps-{name}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEIVR_")}
    env.update({
        "PYTHONPATH": f"{ROOT / 'scripts'}{os.pathsep}{ROOT}",
        "VOICEIVR_SIP_HANDLER": "bench_media_gaps:HogHandler",
        "VOICEIVR_SIP_KAMAILIO": "no",
        "VOICEIVR_SIP_NAMESERVERS": "127.0.0.1",
        "VOICEIVR_SIP_SOURCE_MAX_CALLS": "0",  # every bench call comes from 127.0.0.1
        "VOICEIVR_SIP_SOURCE_MAX_INVITES": "0",
        "VOICEIVR_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEIVR_CONFIG": str(tmp / "none.toml"),
        "BENCH_HOG": kind, "BENCH_SLICE_MS": str(slice_ms), "BENCH_SECONDS": str(seconds),
        "BENCH_SWITCH": str(switch),
    })
    (tmp / "none.toml").write_text("")
    log = (tmp / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "voiceivr", "serve", "--host", "127.0.0.1", "--port", str(port)],
                             env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while b"serving SIP" not in (tmp / "serve.log").read_bytes():
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"voiceivr serve did not start:\n{(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run([sys.executable, __file__, "--caller", f"sip:bench@127.0.0.1:{port}", "4", str(seconds)],
                       env=env, check=True, timeout=seconds + 60, stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # the recorder writes each JSON within 250 ms of the call's end
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
        log.close()
    docs = sorted((json.loads(p.read_text()) for p in (tmp / "var" / "recordings").glob("*/*.json")),
                  key=lambda d: d["started_at"])
    shutil.rmtree(tmp, ignore_errors=True)
    if len(docs) != 4:
        raise SystemExit(f"{name}: expected 4 recorded calls, found {len(docs)}")
    return {"scenario": name, "hog_call": docs[0]["frame_gaps"], "others": merge([d["frame_gaps"] for d in docs[1:]])}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario (call 1 does this) | other calls: median gap | p95 | p99 | max | frames > 40 ms | "
        "call 1 itself: max gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o = r["others"]
        lines.append(f"| {r['scenario']} | {o['median_ms']} ms | {o['p95_ms']} ms | {o['p99_ms']} ms | "
                     f"{o['max_ms']} ms | {o['over_40ms']} of {o['frames']} | {r['hog_call']['max_ms']} ms |")
    return "\n".join(lines)


def write_section(path: Path, command: str | None, body: str,
                  title: str = "## Media frame gaps under GIL-holding work (scripts/bench_media_gaps.py)") -> None:
    """Replace the section ``title`` (up to the next '## ') in ``path``, or append it at the end. Used by the
    other bench_* scripts too; ``command`` None when the body already names it."""
    section = f"{title}\n\n" + (f"Command: `{command}`\n\n" if command else "") + f"{body.rstrip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if title in text:
        head, rest = text.split(title, 1)
        nxt = rest.find("\n## ")
        text = head + section + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--caller":
        caller(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--write", type=Path, help="Also write the table into this markdown file.")
    args = parser.parse_args()
    rows = [run_scenario(name, args.seconds) for name in args.scenarios.split(",")]
    out = table(rows)
    print(out)
    if args.write:
        note = (f"4 calls in one worker, {args.seconds:.0f} s each; call 1 runs the work from 1 s to "
                f"{args.seconds - 1:.0f} s. Gaps are measured in the worker between consecutive onFrameRequested "
                "calls (20 ms is on time); the machine is a shared 2-core box, so compare rows, not absolutes.")
        write_section(args.write, "python scripts/bench_media_gaps.py " + " ".join(sys.argv[1:]), note + "\n\n" + out)


if __name__ == "__main__":
    main()
