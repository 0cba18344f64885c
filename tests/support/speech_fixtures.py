"""Helpers for tests on the committed audio fixtures (tests/fixtures/audio, made by scripts/make_fixtures.py)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import Frame, split_frames
from voiceivr.audio.wav import read_wav

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


@cache
def manifest() -> list[dict[str, Any]]:
    return json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))


def entries(kind: str, channel: str | None = None) -> list[dict[str, Any]]:
    return [e for e in manifest() if e["kind"] == kind and (channel is None or e["channel"] == channel)]


@cache
def pcm(file: str) -> np.ndarray:
    audio = read_wav(AUDIO / file)
    assert audio.rate == 8000
    return audio.mono()


def frames(file: str) -> list[Frame]:
    return split_frames(pcm(file), 8000)


def grammar_phrases() -> list[str]:
    """Every caller phrase the fixtures hold, as a dialplan would list them for one prompt."""
    return sorted({e["text"] for e in entries("phrase") if e["intent"] != "long"})
