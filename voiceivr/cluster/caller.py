"""A load caller for the cluster, run as its own process (one pjsua2 endpoint per process, at most 4 calls):

    python -m voiceivr.cluster.caller URI COUNT SECONDS [--bind ADDRESS] [--stagger S] [--dtmf KEYS]

Places COUNT calls (their starts ``--stagger`` seconds apart), each stays up SECONDS unless the far end ends it
first, then hangs up. Prints one JSON line per call **as soon as it ends**, with wall-clock times (``time.time()``,
so another process can line them up with, say, the moment a node was killed): ``dialed_at``, ``answered_at``,
``ended_at``, who ended it (``by``: ``caller`` or ``far end``), the final SIP status and reason, and when the caller
last heard audio (``last_audio_at``). Every wait is bounded (SECONDS + 30 s in all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from voiceivr.settings import SipSettings
from voiceivr.sim.callers.sip import CallerPlan, CallerReport, CallerScript
from voiceivr.telephony.edge import CallSlot, EdgeConfig, SipEdge


@dataclass
class Placed:
    report: CallerReport
    script: CallerScript
    slot: CallSlot
    dialed_at: float
    t_dialed: float
    done: bool = False


def summary(call: Placed, wall_offset: float) -> dict[str, Any]:
    report, script, slot = call.report, call.script, call.slot
    last_audio = None
    if report.agent_audio:
        end = report.agent_audio[-1].end
        last_audio = end if end is not None else script.now()
    answered_at = script.t0 + wall_offset if report.answered and script.t0 else None
    return {
        "answered": report.answered,
        "dialed_at": round(call.dialed_at, 3),
        "answered_at": round(answered_at, 3) if answered_at else None,
        "ended_at": round(time.time(), 3),
        "last_audio_at": round(answered_at + last_audio, 3) if answered_at and last_audio is not None else None,
        "by": "caller" if slot.hangup_by else "far end",
        "status": slot.end_status,
        "reason": slot.end_reason,
        "sip_call_id": report.sip_call_id,
        "frames_heard": len(script.heard),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("uri")
    p.add_argument("count", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--stagger", type=float, default=0.0)
    p.add_argument("--dtmf", default="", help="keys to press once the greeting is over (w = pause), as voiceivr call")
    p.add_argument("--wait-prompt", type=float, default=15.0, help="longest wait for the greeting to end (with --dtmf)")
    args = p.parse_args(argv)
    if not 1 <= args.count <= 4:
        raise SystemExit("count: 1-4 calls per caller process (pjsua2's limit)")
    wall_offset = time.time() - time.monotonic()
    edge = SipEdge(EdgeConfig(sip=SipSettings(), host=args.bind, port=0, max_calls=args.count, name="load"), None)
    edge.start()
    calls: list[Placed] = []
    try:
        for i in range(args.count):
            if i and args.stagger > 0:
                time.sleep(args.stagger)
            report = CallerReport(uri=args.uri)
            t_dialed = time.monotonic()
            plan = CallerPlan(duration_s=args.seconds, dtmf=args.dtmf,
                              wait_prompt_s=args.wait_prompt if args.dtmf else 0.0)
            script = CallerScript(plan, report, t_dialed)
            slot = edge.make_call(args.uri, script)
            calls.append(Placed(report, script, slot, time.time(), t_dialed))
        deadline = time.monotonic() + args.seconds + 30 + args.stagger * args.count
        while time.monotonic() < deadline and not all(c.done for c in calls):
            for call in calls:
                if not call.done and call.slot.ended.is_set():
                    call.done = True
                    call.script.done.wait(1 if call.report.answered else 0)
                    print(json.dumps(summary(call, wall_offset)), flush=True)
            time.sleep(0.02)
        for call in calls:
            if not call.done:
                out = summary(call, wall_offset)
                out["by"], out["reason"] = "timeout", "the call did not end in time"
                print(json.dumps(out), flush=True)
    finally:
        edge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
