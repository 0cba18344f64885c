"""End-of-turn model: has the caller finished their turn, judged from the audio of it (Smart Turn v3.2).

The model is Pipecat's Smart Turn v3.2 (``smart-turn-v3.2-cpu.onnx``: a Whisper-tiny encoder and a
classifier, int8, 8.7 MB), BSD-2-Clause, Copyright (c) 2024-2026 Daily; it ships inside the ``pipecat-ai``
wheel (``pipecat/audio/turn/smart_turn/data/``), which the bootstrap installs without its dependencies. Only
the file is used: pipecat is never imported (its package is located with :func:`importlib.util.find_spec`,
which runs none of its code). ``call.smart_turn_model`` may point at another copy.

Input, as pipecat's ``LocalSmartTurnAnalyzerV3`` prepares it: 16 kHz mono float audio of the turn (its
start, with some audio before it, up to now, trailing quiet included), the last 8 s of it, zero-padded on the
left to 8 s; then Whisper's log-mel features (80 mel bands x 800 frames, n_fft 400, hop 160, Slaney mel
scale, log10, clamp to max-8, (x+4)/4) of the zero-mean unit-variance waveform. :func:`log_mel` is that
computation in numpy (pipecat's ``_whisper_features``, itself derived from Hugging Face transformers'
WhisperFeatureExtractor, Apache-2.0; a test checks the two agree). Output: the probability that the turn is
complete. Telephone audio (8 kHz) is resampled to 16 kHz first: fed 8 kHz samples as if they were 16 kHz, the
model silently says nonsense (pipecat issue 3844).

One :class:`onnxruntime.InferenceSession` per process serves every call (``run`` releases the GIL and is
thread-safe); a decision is one ``run`` on the calling thread (the call's worker).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceivr.audio.resample import resample_float
from voiceivr.errors import VoiceivrError
from voiceivr.speech.onnx import shared_session

MODEL_RATE = 16000
MAX_SECONDS = 8
N_FFT = 400
HOP = 160
N_MELS = 80
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
LICENCE = "Smart Turn v3.2 model: BSD-2-Clause, Copyright (c) 2024-2026 Daily (pipecat-ai)"

Floats = npt.NDArray[np.float32]


class EndOfTurnModelError(VoiceivrError):
    """The end-of-turn model is missing or unusable."""


def packaged_model() -> Path:
    """The Smart Turn v3.2 file inside the installed pipecat-ai wheel (its package is not imported)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise EndOfTurnModelError(
            "the Smart Turn model is not installed (package pipecat-ai) and call.smart_turn_model is empty",
            hint="pip install --no-deps pipecat-ai==1.14.0 (scripts/_bootstrap.sh does), or set "
                 "call.smart_turn_model to a smart-turn-v3.2-cpu.onnx file, or call.turn_detector = rules",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE


# --- features (numpy only) ----------------------------------------------------------------------------------


def _hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mel scale: linear under 1 kHz, logarithmic above."""
    f = np.atleast_1d(np.asarray(f, dtype=np.float64))
    mel = 3.0 * f / 200.0
    high = f >= 1000.0
    mel[high] = 15.0 + np.log(f[high] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    f = 200.0 * m / 3.0
    high = m >= 15.0
    f[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[high] - 15.0))
    return f


@functools.cache
def _mel_filters() -> npt.NDArray[np.float64]:
    """(n_fft/2+1, 80) Slaney-normalised triangular filters from 0 Hz to 8 kHz."""
    bins = N_FFT // 2 + 1
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([MODEL_RATE / 2]))[0],
                                   N_MELS + 2))
    fft_hz = np.linspace(0, MODEL_RATE // 2, bins)
    diff = np.diff(edges)
    slopes = edges[None, :] - fft_hz[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (edges[2:N_MELS + 2] - edges[:N_MELS]))[None, :]
    return filters


@functools.cache
def _window() -> npt.NDArray[np.float64]:
    return np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def log_mel(audio: npt.NDArray[Any]) -> Floats:
    """Whisper log-mel features (80, 800) of 8 s of 16 kHz audio (shorter: zero-padded at the end)."""
    n = MODEL_RATE * MAX_SECONDS
    x = np.asarray(audio, dtype=np.float32)
    x = np.pad(x, (0, n - x.size)) if x.size < n else x[:n]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    pad = N_FFT // 2
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    # A short turn is mostly the left zero-padding: those frames are all the same (one constant value after the
    # normalisation), so one FFT stands for all of them, to the bit (half the cost of a 3 s turn's features)
    moving = np.flatnonzero(x != x[0])
    lead = int(moving[0]) if moving.size else x.size
    same = max(0, min(len(frames), (lead - pad) // HOP + 1)) if lead > pad else 0
    power = np.empty((len(frames), N_FFT // 2 + 1))
    if same:
        power[:same] = np.abs(np.fft.rfft(frames[0] * _window())) ** 2
    power[same:] = np.abs(np.fft.rfft(frames[same:] * _window(), axis=-1)) ** 2
    power = power.T
    spec = np.log10(np.maximum(1e-10, _mel_filters().T @ power))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


def model_input(pcm: npt.NDArray[np.int16], rate: int) -> Floats:
    """The model's input (1, 80, 800) for a turn's int16 audio at ``rate``: 16 kHz, last 8 s, left-padded."""
    x = pcm.astype(np.float64) / 32768.0
    if rate != MODEL_RATE:
        x = resample_float(x, rate, MODEL_RATE)
    n = MODEL_RATE * MAX_SECONDS
    x = x[-n:] if x.size > n else np.pad(x, (n - x.size, 0))
    return log_mel(x.astype(np.float32))[None, :, :]


# --- the model ----------------------------------------------------------------------------------------------

def _session(path: Path) -> Any:
    def check(session: Any) -> str | None:
        names = [i.name for i in session.get_inputs()]
        if names == ["input_features"]:
            return None
        return f"{path} is not a Smart Turn v3 model (inputs {names}; setting call.smart_turn_model)"

    return shared_session(
        path, what="Smart Turn model", setting="call.smart_turn_model", error=EndOfTurnModelError, check=check,
        missing_hint="install pipecat-ai==1.14.0 with --no-deps, point call.smart_turn_model at the .onnx file, "
                     "or set call.turn_detector = rules",
    )


class SmartTurn:
    """The end-of-turn model of this process. :meth:`complete` is the probability that a turn is over."""

    name = "smart_turn"

    def __init__(self, model: str = "") -> None:
        self.path = Path(model) if model else packaged_model()
        self._session = _session(self.path)

    def complete(self, pcm: npt.NDArray[np.int16], rate: int) -> tuple[float, float]:
        """(probability that the turn in ``pcm`` is complete, seconds of CPU wall time the decision took)."""
        start = time.perf_counter()
        features = model_input(pcm, rate)
        out = self._session.run(None, {"input_features": features})
        p = float(np.asarray(out[0]).reshape(-1)[0])
        return p, time.perf_counter() - start


@functools.cache
def load(model: str = "") -> SmartTurn:
    """The process's model for the setting ``call.smart_turn_model`` (loaded once)."""
    return SmartTurn(model)
