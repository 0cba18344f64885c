#!/usr/bin/env python3
"""Make tests/fixtures/calls/bank_call.{wav,json}: a multi-turn bank call recorded in the SIP edge's format.

A scripted caller (voiceivr/sim/callers/scripted.py) speaks the telephone-channel phrase fixtures of
tests/fixtures/audio/ and keys digits, waiting for the agent like a person would, against the real pipeline
(Silero VAD, pocketsphinx, espeak-ng, dialplans/bank.yaml, the safe path) on a scratch database. The caller
channel and the key presses are saved as a recording (docs/recordings.md), so `voiceivr replay` and the
tests can run the call again. The agent channel is saved too (the right channel), as a recording has it.

The call: talks over the long main-menu prompt to ask for the balance, logs in by keypad, picks checking,
asks for a transfer (keys fifty dollars, says "from checking to savings"), confirms the read-back, keys a wrong code,
says goodbye.

    .venv/bin/python scripts/make_replay_fixture.py   # deterministic: same files every run
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.audio.wav import read_wav, write_wav  # noqa: E402
from voiceivr.call import events as ev  # noqa: E402
from voiceivr.call.driver import drive  # noqa: E402
from voiceivr.call.media import MediaChannel  # noqa: E402
from voiceivr.policy.gate import SessionBinding  # noqa: E402
from voiceivr.replay import RECORDING_FORMAT, scratch_database  # noqa: E402
from voiceivr.runtime import CallRuntime  # noqa: E402
from voiceivr.settings import load_settings  # noqa: E402
from voiceivr.sim.callers import scripted as cs  # noqa: E402
from voiceivr.sim.callers import steps as st  # noqa: E402

PHRASES = ROOT / "tests" / "fixtures" / "audio" / "phrases"
OUT = ROOT / "tests" / "fixtures" / "calls"
CALL_ID = "00000000-0000-4000-8000-00000000ba4c"


def phrase(intent: str, voice: str = "espeak-us") -> np.ndarray:
    return read_wav(PHRASES / f"{intent}__{voice}__tel.wav").mono()


def script() -> list[st.Step]:
    return [
        st.Wait(8.0, silence_s=0.1),  # the disclosure plays to its end
        st.Play("check my balance", phrase("check_balance"), barge_after_s=1.5),
        st.Wait(30.0), st.Dtmf("10000001#", gap_s=0.2),
        st.Wait(30.0), st.Dtmf("1234#", gap_s=0.2),
        st.Wait(30.0), st.Dtmf("1", gap_s=0.2),
        # piper: espeak-us's "transfer money" is recognised at confidence ~0.2 and reprompted (docs/speech.md)
        st.Wait(30.0), st.Play("transfer money", phrase("transfer", "piper-joe")),
        st.Wait(30.0), st.Dtmf("5000#", gap_s=0.2),  # fifty dollars, in cents (amounts by voice: docs/speech.md)
        st.Wait(30.0), st.Play("from checking to savings", phrase("accounts")),
        st.Wait(30.0), st.Play("yes", phrase("yes")),
        st.Wait(30.0), st.Dtmf("000000#", gap_s=0.2),
        st.Wait(30.0), st.Play("goodbye", phrase("goodbye")),
        st.Wait(10.0), st.Hangup(),
    ]


def main() -> None:
    settings, _ = load_settings(environ={"VOICEIVR_PLUGINS_ENABLED": "demo"}, config_file=ROOT / "absent.toml")
    with tempfile.TemporaryDirectory() as tmp:
        settings.paths.var_dir = Path(tmp)
        db = scratch_database(Path(tmp) / "fixture.sqlite3", settings)
        runtime = CallRuntime.build(settings, db=db, dialplan_file=ROOT / "dialplans" / "bank.yaml", stt_workers=0,
                                    store_calls=False)
        caller = cs.ScriptedCaller(script())
        session, _, _ = runtime.new_session(CALL_ID, MediaChannel(8000), SessionBinding(CALL_ID))
        result = drive(session, caller, tail_s=2.0, max_s=180.0, line_codec="pcmu")
        runtime.close()
        db.dispose()
    OUT.mkdir(parents=True, exist_ok=True)
    stereo = np.stack([result.caller, result.agent], axis=1)
    write_wav(OUT / "bank_call.wav", stereo, 8000, encoding="mulaw")  # G.711, as it crossed the line
    events = [{"t": round(t, 2), "type": "dtmf", "digit": e.digit, "method": "rfc4733"}
              for t, e in result.control if isinstance(e, ev.DtmfDigit)]
    doc = {
        "format": RECORDING_FORMAT,
        "call_id": CALL_ID,
        "wav": "bank_call.wav",
        "rate": 8000,
        "channels": ["caller", "agent"],
        "duration_s": round(len(result.caller) / 8000, 2),
        "sip": {"call_id": CALL_ID, "from_uri": "sip:+15555550199@127.0.0.1", "codec": "PCMU/8000"},
        "events": events,
        "made_by": "scripts/make_replay_fixture.py (a scripted caller against the real pipeline)",
        "caller_script": [{"t": round(t, 2), "did": what} for t, what in caller.log],
    }
    (OUT / "bank_call.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    said = [e.text for e in session.timeline if isinstance(e, ev.PromptStarted)]
    print(f"{doc['duration_s']} s, {len(events)} key presses; the agent said:")
    for line in said:
        print("  ", line)


if __name__ == "__main__":
    main()
