"""Test helper, run as its own process (one pjsua2 endpoint per process): one call through the real caller.

    python tests/sip/sip_script_caller.py '{"uri": "sip:ivr@127.0.0.1:5060", "duration": 5, "record": "heard.wav",
        "transcribe": true, "steps": [["wait", 15], ["play", "phrase.wav"], ["barge", "phrase.wav", 1.5],
        ["dtmf", "10000001#"], ["sms_code", {"base_url": ..., "sid": ..., "token": ..., "to": ...}, "#"],
        ["pause", 1], ["hangup"]]}'

``sms_code`` keys the newest code texted to ``to`` that the caller has not used yet, read from the Messages
API (the local stand-in for Twilio), as a caller reads it off their phone. Prints the CallerReport as JSON.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from voiceivr.settings import load_settings
from voiceivr.sim.callers import sip as caller


def sms_code(api: dict[str, str], seen: set[str]) -> str:
    """The newest unseen one-time code texted to ``api["to"]`` (waits up to 10 s for it)."""
    url = f"{api['base_url']}/2010-04-01/Accounts/{api['sid']}/Messages.json?To={api['to'].replace('+', '%2B')}"
    auth = base64.b64encode(f"{api['sid']}:{api['token']}".encode()).decode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            messages = json.loads(resp.read())["messages"]
        for m in messages:  # newest first
            found = re.search(r"\b(\d{6})\b", m["body"])
            if found and m["sid"] not in seen:
                seen.add(m["sid"])
                return found.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"no code texted to {api['to']} within 10 s")


def main() -> None:
    spec = json.loads(sys.argv[1])
    settings, _ = load_settings()
    rate = settings.sip.media_rate
    seen: set[str] = set()
    steps: list[caller.Step] = []
    for step in spec["steps"]:
        kind, args = step[0], step[1:]
        if kind == "wait":
            steps.append(caller.Wait(float(args[0])))
        elif kind in ("play", "barge"):
            pcm = caller.read_wav_mono(Path(args[0]), rate)
            barge_after = float(args[1]) if kind == "barge" else None
            steps.append(caller.Play(Path(args[0]).stem, pcm, barge_after_s=barge_after))
        elif kind == "dtmf":
            steps.append(caller.Dtmf(str(args[0])))
        elif kind == "sms_code":
            api, suffix = dict(args[0]), str(args[1]) if len(args) > 1 else ""

            def fetch(api: dict[str, Any] = api, suffix: str = suffix) -> str:
                return sms_code(api, seen) + suffix

            steps.append(caller.Dtmf(fetch, "code from SMS"))
        elif kind == "pause":
            steps.append(caller.Pause(float(args[0])))
        elif kind == "hangup":
            steps.append(caller.Hangup())
        else:
            raise SystemExit(f"unknown step {kind!r}")
    plan = caller.CallerPlan(steps=steps, duration_s=float(spec.get("duration", 3.0)))
    stt = caller.transcriber(settings, "") if spec.get("transcribe") else None
    record = Path(spec["record"]) if spec.get("record") else None
    report = caller.place_call(settings.sip, spec["uri"], plan, record=record, stt=stt)
    print(json.dumps(report.as_dict()), flush=True)


if __name__ == "__main__":
    main()
