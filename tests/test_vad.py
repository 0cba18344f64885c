"""Silero VAD on real audio: every speech onset found within 250 ms, nothing fired by DTMF, ringback, hum,
noise or an idle line; per-call state; batching gives the same events as one call at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.speech_fixtures import entries, frames, pcm
from voiceivr.audio.frames import Frame, split_frames
from voiceivr.audio.resample import resample
from voiceivr.errors import VoiceivrError
from voiceivr.speech.base import VadEvent
from voiceivr.speech.vad import SileroVad, VadConfig, VadModelError

ONSET_LIMIT_S = 0.25


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def run(vad: SileroVad, file: str) -> list[VadEvent]:
    stream = vad.stream(8000)
    events: list[VadEvent] = []
    for frame in frames(file):
        events.extend(stream.feed(frame))
    return events


SPEECH = [e for e in entries("phrase") + entries("human") + entries("korean") if e["onsets"]]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_every_speech_onset_is_found_within_250_ms(vad: SileroVad) -> None:
    late: list[str] = []
    for e in SPEECH:
        starts = [ev for ev in run(vad, e["file"]) if ev.kind == "start"]
        onset = e["onsets"][0]
        if not starts:
            late.append(f"{e['file']}: no start event")
            continue
        first = starts[0]
        if not (-0.05 <= first.decided_at - onset <= ONSET_LIMIT_S and abs(first.t - onset) <= ONSET_LIMIT_S):
            late.append(f"{e['file']}: onset {onset:.3f}, estimated {first.t:.3f}, decided {first.decided_at:.3f}")
    assert len(SPEECH) >= 100
    assert not late, late


@pytest.mark.parametrize("e", entries("nonspeech"), ids=lambda e: e["file"])
def test_no_event_on_non_speech(vad: SileroVad, e: dict) -> None:
    assert run(vad, e["file"]) == []


def test_speech_ends_after_the_phrase(vad: SileroVad) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "check_balance")
    events = run(vad, e["file"])
    assert [ev.kind for ev in events] == ["start", "end"]
    start, end = events
    duration = len(pcm(e["file"])) / 8000
    assert start.t < end.t < duration
    assert end.decided_at - end.t >= VadConfig().min_silence_ms / 1000 - 0.032  # that much silence first


def test_streams_keep_their_own_state(vad: SileroVad) -> None:
    speech = next(x for x in entries("phrase", "tel") if x["intent"] == "agent")["file"]
    noise = "nonspeech/pink_noise.wav"
    alone = run(vad, speech)
    a, b = vad.stream(8000), vad.stream(8000)
    got_a: list[VadEvent] = []
    for fa, fb in zip(frames(speech), frames(noise), strict=False):
        got_a.extend(a.feed(fa))
        assert b.feed(fb) == []
    assert got_a == alone[: len(got_a)] and got_a


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_batched_inference_matches_one_at_a_time(vad: SileroVad) -> None:
    files = [e["file"] for e in entries("phrase", "tel")[:12]] + ["nonspeech/dtmf.wav"]
    expected = [run(vad, f) for f in files]
    streams = [vad.stream(8000) for _ in files]
    got: list[list[VadEvent]] = [[] for _ in files]
    per_file = [frames(f) for f in files]
    for i in range(max(len(f) for f in per_file)):
        items = [(streams[k], per_file[k][i]) for k in range(len(files)) if i < len(per_file[k])]
        owners = [k for k in range(len(files)) if i < len(per_file[k])]
        for k, evs in zip(owners, vad.feed_many(items), strict=True):
            got[k].extend(evs)
    for g, e in zip(got, expected, strict=True):
        assert [ev.kind for ev in g] == [ev.kind for ev in e]
        assert np.allclose([ev.t for ev in g], [ev.t for ev in e], atol=1e-6)


def test_other_rates_are_resampled_for_the_model(vad: SileroVad) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "transfer")
    for rate in (16000, 22050):
        stream = vad.stream(rate)
        events: list[VadEvent] = []
        for frame in split_frames(resample(pcm(e["file"]), 8000, rate), rate):
            events.extend(stream.feed(frame))
        assert events and events[0].kind == "start"
        assert abs(events[0].t - e["onsets"][0]) <= ONSET_LIMIT_S


def test_reset_and_timestamps_follow_the_call_clock(vad: SileroVad) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "yes")
    stream = vad.stream(8000)
    events = [ev for f in split_frames(pcm(e["file"]), 8000, t0=100.0) for ev in stream.feed(f)]
    assert events[0].t > 100.0 and abs(events[0].t - 100.0 - e["onsets"][0]) <= ONSET_LIMIT_S
    stream.reset()
    assert not stream.speaking
    with pytest.raises(ValueError, match="16000 Hz"):
        stream.feed(Frame(np.zeros(320, np.int16), 16000, 0.0))


def test_bad_settings_and_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VoiceivrError, match=r"vad\.neg_threshold"):
        SileroVad(VadConfig(threshold=0.3, neg_threshold=0.5))
    with pytest.raises(VadModelError, match=r"speech\.silero_model"):
        SileroVad(model=tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(VadModelError, match=r"speech\.silero_model"):
        SileroVad(model=junk)


def test_one_session_per_process(vad: SileroVad) -> None:
    assert SileroVad().session is vad.session
