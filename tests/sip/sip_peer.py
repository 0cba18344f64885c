"""Test helper, run as its own process: one SIP call driven by a list of steps (JSON on argv).

    python tests/sip/sip_peer.py '{"uri": "sip:ivr@127.0.0.1:5060", "headers": {...}, "accept_refer": false,
                               "steps": [["wait_prompt", 3], ["dtmf", "12", "rfc4733"], ["reinvite"],
                                         ["sleep", 1], ["hangup"]]}'

Prints ``{"event": "answered", ...tags...}`` as soon as the call is up (so a test can build a Replaces
header from it), then the final report as one JSON line. Steps: wait_prompt S, dtmf DIGITS METHOD, sleep S,
reinvite, hangup, wait_end S (wait for the far end to hang up). Optional: "host" (bind address, e.g. 127.0.0.2),
"auth" ([user, password] for a digest challenge).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

from voiceivr.call.handler import CallControl, CallEvents, CallInfo
from voiceivr.call.media import MediaChannel
from voiceivr.settings import SipSettings
from voiceivr.sim.callers.sip import SPEECH_DBFS, CallerPlan, CallerReport, CallerScript, frame_dbfs
from voiceivr.telephony.edge import EdgeConfig, SipEdge


class Peer(CallerScript):
    def __init__(self, steps: list[list[Any]], report: CallerReport) -> None:
        super().__init__(CallerPlan(), report, time.monotonic())
        self.steps = steps
        self.info: CallInfo | None = None

    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        self.info = info
        print(json.dumps({"event": "answered", "sip_call_id": info.sip_call_id, "local_tag": info.local_tag,
                          "remote_tag": info.remote_tag, "codec": info.codec}), flush=True)
        return super().start(info, media, control)

    def _script(self) -> None:
        control = self._control
        assert control is not None
        try:
            for step in self.steps:
                if self._ended.is_set():
                    break
                kind = step[0]
                if kind == "wait_prompt":
                    self._wait_end_of_prompt(float(step[1]))
                elif kind == "dtmf":
                    for digit in step[1]:
                        self.report.dtmf.append({"digit": digit, "t": round(self.now(), 3)})
                        control.send_dtmf(digit, step[2] if len(step) > 2 else "rfc4733")  # type: ignore[attr-defined]
                        self._ended.wait(0.25)
                elif kind == "sleep":
                    self._ended.wait(float(step[1]))
                elif kind == "reinvite":
                    control.reinvite()  # type: ignore[attr-defined]
                elif kind == "hangup":
                    control.hangup("peer script")
                    self._ended.wait(5)
                elif kind == "wait_end":
                    self._ended.wait(float(step[1]))
                else:
                    raise ValueError(f"unknown step {kind!r}")
        finally:
            if not self._ended.is_set():
                control.hangup("peer script finished")
            self.done.set()


def main() -> None:
    spec = json.loads(sys.argv[1])
    sip = dataclasses.replace(SipSettings(), srtp=spec.get("srtp", "off"),
                              srtp_require_tls=spec.get("srtp_require_tls", True))
    auth = spec.get("auth")  # [user, password]: answer a digest challenge (Kamailio with sip.auth_user)
    edge = SipEdge(EdgeConfig(sip=sip, host=spec.get("host", "127.0.0.1"), port=0, max_calls=2, name="peer",
                              accept_refer=spec.get("accept_refer", False), tls_client=spec.get("tls", False),
                              credentials=(auth[0], auth[1]) if auth else None), None)
    edge.start()
    report = CallerReport(uri=spec["uri"])
    peer = Peer(spec.get("steps", []), report)
    try:
        slot = edge.make_call(spec["uri"], peer, headers=spec.get("headers"))
        slot.ended.wait(float(spec.get("timeout", 30)))
        peer.done.wait(3 if report.answered else 0)
        out = report.as_dict()
        out.update(event="ended", status=slot.end_status, reason=slot.end_reason, by=slot.hangup_by or "far end",
                   frames_heard=len(peer.heard), transferred_to=slot.transferred_to,
                   loud_frames=sum(1 for p in peer.heard if frame_dbfs(p) > SPEECH_DBFS))
        print(json.dumps(out), flush=True)
        # A followed REFER places a second call: give it time to finish before we tear down.
        deadline = time.monotonic() + float(spec.get("linger", 0))
        while time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        edge.stop()


if __name__ == "__main__":
    main()
