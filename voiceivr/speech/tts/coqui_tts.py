"""Coqui TTS (coqui-tts) with the operator's own model files: ``speech.coqui_model`` and ``speech.coqui_config``,
loaded through ``TTS(model_path=..., config_path=...)``; nothing is downloaded.

Optional extra ``voiceivr[coqui]``. **Blocked on this project's pinned torch**: coqui-tts 0.28.0 refuses to
import without torchaudio (and torchcodec for torch >= 2.9); the newest torchaudio on PyPI is 2.11.0, built
against torch 2.11 with CUDA, and with torch==2.13.0(+cpu) its extension fails to load
(``OSError: libc10_cuda.so: cannot open shared object file``), so ``import TTS`` raises. docs/speech.md has
the details. This module is therefore not exercised by the default test suite; the opt-in test
(``VOICEIVR_TEST_COQUI=1``) builds and saves a tiny VITS model and synthesises with it once a matching
torchaudio exists.

Coqui models do not stream: each sentence is synthesised whole and yielded (cancel stops before the next);
word marks share a sentence's duration among its words by character count (an estimate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.resample import StreamResampler
from voiceivr.speech.base import EngineStream, TtsCapabilities, TtsChunk, TtsEngine, TtsStream, WordMark
from voiceivr.speech.tts.espeak import split_sentences
from voiceivr.speech.tts.piper_tts import TtsModelError

_LOCK = threading.Lock()  # one synthesis at a time per model: torch modules are not re-entrant here


class CoquiStream(EngineStream):
    def __init__(self, engine: CoquiEngine, text: str, rate: int) -> None:
        super().__init__(text, rate)
        self._engine = engine

    def __iter__(self) -> Iterator[TtsChunk]:
        native = self._engine.capabilities.native_rate
        resampler = StreamResampler(native, self._rate) if native != self._rate else None
        to_drop = resampler.delay_out if resampler else 0
        pieces = split_sentences(self._text)
        offset = 0
        native_total = 0
        for n, (_, sentence) in enumerate(pieces):
            if self._cancelled.is_set():
                return
            t0 = time.thread_time()
            with _LOCK:
                wav = self._engine.tts.tts(text=sentence)
            pcm = np.clip(np.rint(np.asarray(wav, dtype=np.float64) * 32767), -32768, 32767).astype(np.int16)
            native_total += len(pcm)
            last = n == len(pieces) - 1
            out = pcm
            if resampler is not None:
                out = resampler.process(pcm)
                if last:
                    out = np.concatenate([out, resampler.flush()])
                if to_drop:
                    dropped = min(to_drop, len(out))
                    out, to_drop = out[dropped:], to_drop - dropped
                if last:
                    out = out[: max(0, -(-native_total * self._rate // native) - offset)]
            words = sentence.split()
            total = sum(len(w) for w in words) or 1
            marks: list[WordMark] = []
            pos = 0.0
            for w in words:
                start = offset + int(pos)
                pos += len(out) * len(w) / total
                marks.append(WordMark(w, start, offset + int(pos)))
            offset += len(out)
            self.engine_seconds += time.thread_time() - t0
            yield TtsChunk(out, self._rate, tuple(marks), final=last)


class CoquiEngine(TtsEngine):
    name = "coqui"

    def __init__(self, model: str, config: str) -> None:
        if not model or not config:
            raise TtsModelError(
                "speech.tts_engine = coqui needs speech.coqui_model and speech.coqui_config (a model file and its "
                "config.json)"
            )
        self.model_path, self.config_path = Path(model), Path(config)
        for path, name in ((self.model_path, "speech.coqui_model"), (self.config_path, "speech.coqui_config")):
            if not path.is_file():
                raise TtsModelError(f"Coqui file {path} does not exist (setting {name})")
        try:
            from TTS.api import TTS
        except ImportError as exc:
            raise TtsModelError(
                f"Coqui TTS cannot be imported: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                hint="pip install 'voiceivr[coqui]'; with torch==2.13.0 it also needs a torchaudio built for that "
                "torch, which PyPI does not have yet (docs/speech.md)",
            ) from None
        try:
            self.tts: Any = TTS(model_path=str(self.model_path), config_path=str(self.config_path), progress_bar=False)
        except Exception as exc:  # coqui raises many untyped errors for a bad model
            raise TtsModelError(f"Coqui cannot load {self.model_path} (setting speech.coqui_model): {exc}") from None
        rate = int(self.tts.synthesizer.output_sample_rate)
        self.capabilities = TtsCapabilities(streaming=False, native_rate=rate, releases_gil=True)

    @property
    def voice(self) -> str:
        stat = self.model_path.stat()
        return f"coqui {self.model_path.name} {stat.st_size} {int(stat.st_mtime)}"

    def stream(self, text: str, rate: int) -> TtsStream:
        return CoquiStream(self, text, rate)
