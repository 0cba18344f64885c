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
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from voiceivr.settings import load_settings
from voiceivr.sim.callers import sip as caller
from voiceivr.sim.callers.sip import call as call_module


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
    record = Path(spec["record"]) if spec.get("record") else None
    if not spec.get("transcribe"):
        report = caller.place_call(settings.sip, spec["uri"], plan, record=record)
    else:
        with LiveTranscript(rate) as live:
            report = caller.place_call(settings.sip, spec["uri"], plan, record=record)
            if report.answered:
                report.transcript = live.text()
    print(json.dumps(report.as_dict()), flush=True)


# The child that transcribes: what ``caller.transcribe`` does after the call (the default engine, every frame
# heard fed in order with its media-clock time, one free-speech turn), fed while the call goes on.
_TRANSCRIBER = """
import os, sys
os.nice(10)  # the call's real-time processes come first
from voiceivr.audio.frames import FRAME_MS, Frame
from voiceivr.settings import load_settings
from voiceivr.sim.callers import sip as caller
from voiceivr.sim.callers.sip import call as call_module
rate, n = int(sys.argv[1]), int(sys.argv[1]) * FRAME_MS // 1000 * 2
stream = caller.transcriber(load_settings()[0], "").stream(rate)
i = 0
while len(pcm := sys.stdin.buffer.read(n)) == n:
    stream.feed(Frame.from_bytes(pcm, rate, i * FRAME_MS / 1000.0))
    i += 1
print(stream.finish().text, flush=True)
"""


class LiveTranscript:
    """``--transcribe`` without the wait after the call: the caller's frames go, as they are heard, to a child
    process (niced) running the same transcription as :func:`voiceivr.sim.callers.sip.call.transcribe`, so a
    two-minute call is not followed by a minute of decoding. Same engine, same frames in the same order with
    the same times: the same transcript."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.scripts: list[caller.CallerScript] = []
        self._done = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-c", _TRANSCRIBER, str(rate)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self._pump = threading.Thread(target=self._run, name="live-transcript", daemon=True)

    def __enter__(self) -> LiveTranscript:
        scripts, base = self.scripts, call_module.CallerScript

        class Recorded(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                scripts.append(self)

        setattr(call_module, "CallerScript", Recorded)  # noqa: B010 (place_call makes its script by this name)
        self._base = base
        self._pump.start()
        return self

    def _run(self) -> None:
        assert self.proc.stdin is not None
        sent = 0
        while True:
            finished = self._done.is_set()  # read before the frames: none is left behind at the end
            heard = self.scripts[0].heard if self.scripts else []
            upto = len(heard)  # the listener thread keeps appending
            if upto > sent:
                self.proc.stdin.write(b"".join(heard[sent:upto]))
                self.proc.stdin.flush()
                sent = upto
            if finished:
                break
            self._done.wait(0.2)
        self.proc.stdin.close()

    def text(self) -> str:
        self._done.set()
        self._pump.join()
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # to its end: the child prints once it has decoded the last frame
        if self.proc.wait(60) != 0:
            raise SystemExit(f"the transcriber failed (exit {self.proc.returncode})")
        return out.decode().strip()

    def __exit__(self, *exc: object) -> None:
        setattr(call_module, "CallerScript", self._base)  # noqa: B010
        self._done.set()
        self._pump.join(5)
        if self.proc.poll() is None:  # text() was not asked for (no answer, or an error): nothing to wait for
            self.proc.kill()
        self.proc.wait(10)


if __name__ == "__main__":
    main()
