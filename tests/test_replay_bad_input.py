"""Bad audio from a caller, through the whole pipeline (real VAD, recogniser, router, the bank dialplan) on the
virtual clock: an empty, silent, noisy, clipped or 30-second turn is "not understood" or a timeout prompt --
never an exception, never a task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.speech_fixtures import entries, pcm
from voiceivr.audio.wav import write_wav
from voiceivr.cli import cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000
GREETING_S = 9.0  # the bank's disclosure and menu prompt, with the caller quiet


def _line(seconds: float, seed: int = 1) -> np.ndarray:
    """A phone line with nobody talking: -55 dBFS of noise, as the telephone fixtures have."""
    return np.random.default_rng(seed).normal(0, 58, int(seconds * RATE)).astype(np.int16)


def _then(turn: np.ndarray, after_s: float = 8.0) -> np.ndarray:
    return np.concatenate([_line(GREETING_S), turn, _line(after_s, seed=2)])


def _speech(file: str) -> np.ndarray:
    return pcm(file).astype(np.int16)


def _clipped() -> np.ndarray:
    """A caller far too loud for the line: the whole turn squared off at full scale."""
    loud = _speech(_hours_file()).astype(np.int32) * 40
    return np.clip(loud, -32768, 32767).astype(np.int16)


def _thirty_seconds() -> np.ndarray:
    """Half a minute of someone reading aloud, none of it a bank request."""
    human = [e["file"] for e in entries("human", "tel") if e["file"].startswith("human/librivox")]
    out = np.concatenate([_speech(f) for f in human] * 4)
    return out[: 30 * RATE]


def _hours_file() -> str:
    return next(e["file"] for e in entries("phrase", "tel") if e["intent"] == "opening_hours")


CASES: dict[str, Callable[[], np.ndarray]] = {
    "silent": lambda: _line(GREETING_S + 20.0),
    "digital zeros": lambda: np.zeros(int((GREETING_S + 20.0) * RATE), dtype=np.int16),
    "white noise": lambda: _then(np.random.default_rng(3).normal(0, 3000, 3 * RATE).astype(np.int16)),
    "clipped": lambda: _then(_clipped()),
    "30 seconds": lambda: _then(_thirty_seconds()),
}
# Cases still routed to a task, with why (the 30 s reading was, until the grammar result was scored against a
# phone loop: issue 14 item 2).
KNOWN_GAPS: dict[str, str] = {}


def _replay(tmp_path: Path, name: str, audio: np.ndarray) -> dict[str, Any]:
    wav = tmp_path / f"{name.replace(' ', '_')}.wav"
    write_wav(wav, audio, RATE)
    out = CliRunner().invoke(cli, ["replay", str(wav), "--dialplan", str(ROOT / "dialplans" / "bank.yaml"),
                                   "--json"])
    assert out.exit_code == 0, (name, out.output[-2000:])
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_an_empty_recording_ends_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEIVR_PATHS_VAR_DIR", str(tmp_path))
    result = _replay(tmp_path, "empty", np.zeros(0, dtype=np.int16))
    assert result["resolved_tasks"] == 0 and not [e for e in result["timeline"] if e["type"] == "IntentRecognized"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_GAPS[n], strict=True))
                                  if n in KNOWN_GAPS else n for n in CASES])
def test_bad_audio_is_never_a_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("VOICEIVR_PATHS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEIVR_DIALPLAN_TIERS", "0,1")
    result = _replay(tmp_path, name, CASES[name]())
    timeline = result["timeline"]
    notes = [e for e in timeline if e["type"] == "Note"]
    assert not [e for e in notes if e["kind"] == "error"]
    intents = [e for e in timeline if e["type"] == "IntentRecognized" and e.get("intent")]
    assert intents == [], intents  # nothing was routed to a task
    assert result["resolved_tasks"] == 0
    # What the caller heard after the greeting: a reprompt naming the tasks or "are you still there?"
    said = [e["text"] for e in timeline if e["type"] == "PromptStarted"][2:]
    assert said and all(("didn't get that" in t or "still there" in t or "How can I help" in t
                         or "press" in t or "stepped away" in t or "agent" in t or "Goodbye" in t) for t in said), said
