"""Test helper, run as its own process (one pjsua2 endpoint per process): place up to 4 calls at once.

    python tests/sip/sip_multicall.py URI COUNT SECONDS [DTMF] [ROUNDS]

Each call waits for the greeting, keys DTMF (if given), stays up SECONDS, then hangs up. With ROUNDS > 1
the batch is repeated in the same process (pjsua2 reuses its call slots on both sides). $VIVR_MULTICALL_HOST
binds it to another loopback address (127.0.0.2...), so its calls come from another source. Prints one JSON
object per line: the CallerReport of each call plus how many frames it heard and who hung up.
"""

from __future__ import annotations

import json
import os
import sys
import time

from voiceivr.settings import SipSettings
from voiceivr.sim.callers.sip import CallerPlan, CallerReport, CallerScript
from voiceivr.telephony.edge import CallSlot, EdgeConfig, SipEdge


def main() -> None:
    uri, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    dtmf = sys.argv[4] if len(sys.argv) > 4 else ""
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    host = os.environ.get("VIVR_MULTICALL_HOST", "127.0.0.1")  # another loopback address: another source
    edge = SipEdge(EdgeConfig(sip=SipSettings(), host=host, port=0, max_calls=count, name="multi"), None)
    edge.start()
    try:
        for _ in range(rounds):
            results: list[tuple[CallerReport, CallerScript, CallSlot]] = []
            for _ in range(count):
                report = CallerReport(uri=uri)
                script = CallerScript(CallerPlan(dtmf=dtmf, wait_prompt_s=1.5 if dtmf else 0.0, duration_s=seconds),
                                      report, time.monotonic())
                slot = edge.make_call(uri, script)
                results.append((report, script, slot))
            print(json.dumps({"event": "dialed", "count": count}), flush=True)
            deadline = time.monotonic() + seconds + 20
            for report, script, slot in results:
                slot.ended.wait(max(0.1, deadline - time.monotonic()))
                script.done.wait(2 if report.answered else 0)
                out = report.as_dict()
                out["frames_heard"] = len(script.heard)
                out["status"] = slot.end_status
                out["reason"] = slot.end_reason
                out["by"] = slot.hangup_by or "far end"
                out["lasted_s"] = round(script.now(), 2) if report.answered else 0.0
                print(json.dumps(out), flush=True)
            time.sleep(0.2)  # let pjsua free the slots before the next batch
    finally:
        edge.stop()


if __name__ == "__main__":
    main()
