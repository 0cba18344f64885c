"""pocketsphinx 5: the default recognizer. Its en-us acoustic model, cmudict and a general language model
ship inside the PyPI wheel, so it works offline out of the box.

- Grammar mode (a phrase list per turn): the phrases become a JSGF grammar, compiled once per decoder and
  phrase set and then reused. This is what makes a small embedded recognizer accurate in an IVR.
- Free speech (no grammar): the wheel's en-us language model. Slow and inaccurate on telephone speech; kept
  for completeness, not for call flows.
- Telephone audio: the model is 16 kHz only, so 8 kHz audio is upsampled (an 8 kHz configuration of the
  same model recognises nearly nothing). Each turn starts from a cepstral mean measured on telephone audio
  (:data:`TELEPHONE_CMN`) instead of the model's default, which is far off for band-limited speech. A -55 dBFS
  noise floor is added at the input rate (:data:`NOISE_FLOOR_LSB`): exact digital zeros (idle mu-law, TTS
  audio) otherwise throw the energy cepstrum far from the preset and recognition fails (8 espeak prompts
  padded with digital silence: 3/8 right without, 8/8 with).
- Confidence (grammar mode): a grammar always ends on *some* phrase, so whether it did says little (the
  grammar's best phrase was wrong for about half of the menu turns of the understanding evaluation). What
  does separate right from wrong is how much worse the grammar's path explains the audio than an
  unconstrained one: a phone-loop decoder (the wheel's en-us phone language model) is fed the same frames
  while the caller speaks, and the score is (grammar path - phone-loop path) per 10 ms frame
  (:attr:`SttResult.score`). :func:`calibrated` maps it to a probability of being right with a logistic
  fitted on the development set (:data:`CALIBRATION`). A result that stopped inside a phrase is capped at
  :data:`CONF_PART_PHRASE`; no result is 0. Free speech: the lattice posterior.
- It does **not** release the GIL while decoding: in a process that carries live media use it through
  :mod:`voiceivr.speech.stt.remote` (``speech.stt_workers``). Figures in docs/speech.md.

Decoders are expensive (about 0.1 s and 29 MB each), so the engine keeps a pool and lends one to each turn.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voiceivr.audio.frames import Frame
from voiceivr.audio.resample import StreamResampler
from voiceivr.errors import VoiceivrError
from voiceivr.speech.base import SttCapabilities, SttEngine, SttResult, SttStream
from voiceivr.speech.stt.grammar import GrammarError, accepts, check_vocabulary, to_jsgf

MODEL_RATE = 16000
# Cepstral mean of 8 kHz telephone speech (300-3400 Hz, G.711) upsampled to 16 kHz, measured with get_cmn()
# after decoding the telephone fixtures (scripts/make_fixtures.py --measure-cmn). The model's default
# (40,3,-1,...) belongs to wide-band microphone speech; starting there costs ~12 points of accuracy.
TELEPHONE_CMN = "44.84,24.74,-51.47,37.32,-29.21,-11.09,12.47,-37.57,14.52,-16.01,-8.27,8.41,-19.28"
PARTIAL_EVERY_S = 0.2  # how often feed() returns a partial hypothesis
NOISE_FLOOR_LSB = 58.0  # -55 dBFS of white noise in the input band: the floor TELEPHONE_CMN was measured with
MAX_GRAMMARS_PER_DECODER = 64
UNSCORED_CONFIDENCE = 0.8  # a whole phrase when scoring is off (PocketsphinxEngine(score_grammar_results=False))
CONF_PART_PHRASE = 0.2  # the most a result that stopped inside a phrase can get (0 of 16 such were right)
# The phone-loop decoder's beams (the default of speech.pocketsphinx_phone_beam): 1e-20 separates better on
# noisy lines than 1e-10 (AUC 0.84 vs 0.77 on the development menu turns, clean + pink 10 dB) but costs 36-50
# instead of 12-14 ms of CPU per second of speech.
PHONE_LOOP_BEAM = 1e-15
# Logistic calibration of the score: P(right) = 1 / (1 + exp(-(A * score + B))). Fitted on the development
# set only (menu turns, clean and pink 10 dB) by scripts/fit_stt_confidence.py; see docs/speech.md. The score's
# scale depends on the phone loop's beam, so there is one fit per beam measured; another beam takes the fit of
# the nearest one (in decades) and should be refitted.
CALIBRATIONS: dict[float, tuple[float, float]] = {
    1e-15: (0.2026, 0.9895),
    1e-10: (0.1193, 1.5003),  # AUC 0.745 (1e-15: 0.80); ~10 instead of ~24 ms of CPU per second of speech
}
CALIBRATION = CALIBRATIONS[PHONE_LOOP_BEAM]


def calibration_for(beam: float) -> tuple[float, float]:
    """The logistic fitted at the phone-loop beam nearest ``beam`` (in decades)."""
    nearest = min(CALIBRATIONS, key=lambda fitted: abs(np.log10(fitted) - np.log10(beam)))
    return CALIBRATIONS[nearest]


def calibrated(score: float, calibration: tuple[float, float] = CALIBRATION) -> float:
    """The probability that a grammar result is right, from its score against the phone loop."""
    a, b = calibration
    z = max(-60.0, min(60.0, a * score + b))
    return float(1.0 / (1.0 + np.exp(-z)))


class SttModelError(VoiceivrError):
    """A recognizer model is missing or broken."""


def _wheel_model() -> Path:
    try:
        from pocketsphinx import get_model_path
    except ImportError:
        raise SttModelError(
            "pocketsphinx is not installed (speech.stt_engine = pocketsphinx)", hint="pip install pocketsphinx"
        ) from None
    return Path(get_model_path())


DecoderKind = Literal["grammar", "free", "phone"]


class _Decoder:
    """One pocketsphinx Decoder and the grammars already compiled into it. ``kind``: grammars, free speech
    (the general language model) or the phone loop that a grammar result is scored against."""

    def __init__(self, decoder: Any, kind: DecoderKind) -> None:
        self.decoder = decoder
        self.kind = kind
        # search name -> (phrases, run words, run range): what a whole utterance of it looks like
        self.grammars: dict[str, tuple[list[str], list[str], tuple[int, int] | None, str | None]] = {}


class PocketsphinxStream(SttStream):
    def __init__(self, engine: PocketsphinxEngine, dec: _Decoder, rate: int, search: str | None) -> None:
        self._engine = engine
        self._dec = dec
        self._rate = rate
        self._resampler = StreamResampler(rate, MODEL_RATE) if rate != MODEL_RATE else None
        self._rng = np.random.default_rng(0)
        # the floor always lies in the telephone band: made at 8 kHz, upsampled for 16 kHz input
        self._noise_up = StreamResampler(8000, rate) if rate != 8000 else None
        self._grammar = dec.grammars.get(search) if search else None
        # The phone loop hears the same frames as the grammar, while the caller speaks: the score costs no
        # time after the end of speech.
        self._phone = engine._borrow("phone") if search is not None and engine.score_grammar_results else None
        self._samples = 0
        self._since_partial = 0
        self._done = False
        self._last_partial = ""
        self.engine_seconds = 0.0
        d = dec.decoder
        if search is not None:
            d.activate_search(search)
        elif dec.kind == "free":
            d.activate_search("_default")
        # A pooled decoder carries the front end's noise estimate from its last utterance into the next:
        # the same audio then decodes differently depending on which call used the decoder before (the
        # live server heard "get me a" where a replay heard "balance"). Every turn starts from scratch.
        d.reinit_feat()
        if engine.cmn:
            d.set_cmn(engine.cmn)
        d.start_utt()
        if self._phone is not None:
            self._phone.decoder.reinit_feat()
            if engine.cmn:
                self._phone.decoder.set_cmn(engine.cmn)
            self._phone.decoder.start_utt()
        self._phone_open = self._phone is not None

    def _floor(self, pcm: np.ndarray) -> np.ndarray:
        """Add the noise floor at the input rate, before upsampling: noise above the telephone band would be
        energy the acoustic model never sees on a phone line (tried: it ruins accuracy)."""
        if self._noise_up is None:
            noise = self._rng.normal(0.0, NOISE_FLOOR_LSB, len(pcm))
        else:
            n8 = len(pcm) * 8000 // self._rate
            noise = self._noise_up.process_float(self._rng.normal(0.0, NOISE_FLOOR_LSB, n8))
            noise = np.resize(noise, len(pcm)) if len(noise) != len(pcm) else noise
        x = pcm.astype(np.float64) + noise
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

    def _process(self, pcm: np.ndarray) -> None:
        raw = pcm.astype("<i2").tobytes()
        self._dec.decoder.process_raw(raw, False, False)
        if self._phone is not None:
            self._phone.decoder.process_raw(raw, False, False)

    def feed(self, frame: Frame) -> SttResult | None:
        if self._done:
            raise RuntimeError("feed() after finish() or cancel(): start a new stream for the next turn")
        if frame.rate != self._rate:
            raise ValueError(f"STT stream is at {self._rate} Hz, frame is at {frame.rate} Hz")
        t0 = time.thread_time()
        pcm = self._floor(frame.pcm)
        self._process(pcm if self._resampler is None else self._resampler.process(pcm))
        self._samples += len(frame.pcm)
        self._since_partial += len(frame.pcm)
        result = None
        if self._since_partial >= PARTIAL_EVERY_S * self._rate:
            self._since_partial = 0
            hyp = self._dec.decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            if text and text != self._last_partial:
                self._last_partial = text
                result = SttResult(text, 0.0, False, self._samples / self._rate, words=tuple(text.split()))
        self.engine_seconds += time.thread_time() - t0
        return result

    def finish(self) -> SttResult:
        if self._done:
            raise RuntimeError("finish() called twice")
        t0 = time.perf_counter()
        c0 = time.thread_time()
        d = self._dec.decoder
        try:
            if self._resampler is not None:
                self._process(self._resampler.flush())
            d.end_utt()
            hyp = d.hyp()
            text = hyp.hypstr.strip() if hyp is not None else ""
            score = self._score_against_phone_loop(hyp) if text else None
            if not text:
                confidence = 0.0
            elif self._grammar is not None:
                confidence = calibrated(score, self._engine.calibration) if score is not None else UNSCORED_CONFIDENCE
                if not accepts(text, *self._grammar):
                    confidence = min(confidence, CONF_PART_PHRASE)
            else:
                confidence = float(d.get_prob())
        finally:
            self._release()
        self.engine_seconds += time.thread_time() - c0
        return SttResult(
            text=text,
            confidence=max(0.0, min(1.0, confidence)),
            is_final=True,
            audio_seconds=self._samples / self._rate,
            decode_seconds=time.perf_counter() - t0,
            words=tuple(text.split()),
            score=score,
        )

    def _score_against_phone_loop(self, hyp: Any) -> float | None:
        """(grammar path - phone-loop path) per frame, in the decoder's log units (base 1.0001): 0 when the
        grammar explains the audio as well as free phones do, very negative when it forced the words on."""
        if self._phone is None or hyp is None:
            return None
        ph = self._phone.decoder
        ph.end_utt()
        self._phone_open = False
        phone_hyp = ph.hyp()
        frames = ph.n_frames()
        if phone_hyp is None or frames <= 0 or hyp.score <= 0.0 or phone_hyp.score <= 0.0:
            return None  # the Python binding returns exp(log score): 0 is an underflow, not a score
        log = ph.get_logmath()
        return float(log.log(hyp.score) - log.log(phone_hyp.score)) / frames

    def cancel(self) -> None:
        if self._done:
            return
        try:
            self._dec.decoder.end_utt()
        finally:
            self._release()

    def _release(self) -> None:
        self._done = True
        self._engine._give_back(self._dec)
        if self._phone is not None:
            phone, self._phone = self._phone, None
            if self._phone_open:
                self._phone_open = False
                phone.decoder.end_utt()
            self._engine._give_back(phone)


class PocketsphinxEngine(SttEngine):
    name = "pocketsphinx"
    capabilities = SttCapabilities(grammar=True, partials=True, releases_gil=False, rates=(8000, 16000))

    def __init__(
        self,
        model: str = "",
        dictionary: str = "",
        extra_dictionary: str = "",
        language_model: str = "",
        cmn: str | None = TELEPHONE_CMN,
        score_grammar_results: bool = True,
        phone_loop_beam: float = PHONE_LOOP_BEAM,
    ) -> None:
        base = _wheel_model()
        self.model = Path(model) if model else base / "en-us" / "en-us"
        self.dictionary = Path(dictionary) if dictionary else base / "en-us" / "cmudict-en-us.dict"
        self.language_model = Path(language_model) if language_model else base / "en-us" / "en-us.lm.bin"
        self.extra_dictionary = Path(extra_dictionary) if extra_dictionary else None
        self.cmn = cmn
        self.score_grammar_results = score_grammar_results
        self.phone_loop_beam = phone_loop_beam
        self.calibration = calibration_for(phone_loop_beam)
        self.phone_lm = base / "en-us" / "en-us-phone.lm.bin"
        if score_grammar_results and not self.phone_lm.is_file():
            raise SttModelError(f"the phone language model {self.phone_lm} is missing from the pocketsphinx wheel")
        for path, setting_name, want_dir in (
            (self.model, "speech.pocketsphinx_model", True),
            (self.dictionary, "speech.pocketsphinx_dict", False),
        ):
            if not (path.is_dir() if want_dir else path.is_file()):
                raise SttModelError(f"pocketsphinx model file {path} does not exist (setting {setting_name})")
        if not (self.model / "mdef").is_file():
            raise SttModelError(
                f"{self.model} is not a pocketsphinx acoustic model (no mdef; setting speech.pocketsphinx_model)"
            )
        self._extra_words = self._read_extra_dictionary()
        self._lock = threading.Lock()
        self._idle: dict[DecoderKind, list[_Decoder]] = {"grammar": [], "free": [], "phone": []}
        self._give_back(self._new_decoder("grammar"))  # fail at start-up, not on the first turn
        if score_grammar_results:
            self._give_back(self._new_decoder("phone"))

    def _read_extra_dictionary(self) -> dict[str, str]:
        if self.extra_dictionary is None:
            return {}
        try:
            lines = self.extra_dictionary.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SttModelError(
                f"cannot read {self.extra_dictionary} (setting speech.pocketsphinx_extra_dict): {exc.strerror}"
            ) from None
        words: dict[str, str] = {}
        for n, line in enumerate(lines, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) < 2:
                raise SttModelError(
                    f"{self.extra_dictionary}:{n}: expected `word PH O N E S`, got {line.strip()!r} "
                    "(setting speech.pocketsphinx_extra_dict)"
                )
            words[parts[0].lower()] = " ".join(parts[1:]).upper()
        return words

    def _new_decoder(self, kind: DecoderKind) -> _Decoder:
        from pocketsphinx import Config, Decoder

        if kind == "phone":
            # Scores a grammar result (docs/speech.md); it never needs the dictionary's words.
            config = Config(hmm=str(self.model), dict=str(self.dictionary), allphone=str(self.phone_lm),
                            loglevel="FATAL", bestpath=False, beam=self.phone_loop_beam,
                            pbeam=self.phone_loop_beam)
        elif kind == "free":
            config = Config(hmm=str(self.model), dict=str(self.dictionary), lm=str(self.language_model),
                            loglevel="FATAL", bestpath=True)
        else:
            # Grammar decoders, tuned on the demo menu's ~80 phrases over the telephone and noisy fixtures with
            # 0-150 ms lead-in trims (docs/speech.md): without the lattice best path the result always ends
            # in the grammar's final state (with it, "transfer money" came out as the prefix "when are you",
            # "goodbye" as "block my"); topn 8 and beams of 1e-64 recover close calls on telephone audio,
            # silprob 0.1 lets noisy lines pause. Menu intents 87 -> 112 of 126, and cheaper (0.048 -> 0.038 xRT).
            # lm=None, not left out: left out, pocketsphinx loads its default language model (+60 MB a decoder)
            config = Config(hmm=str(self.model), dict=str(self.dictionary), lm=None, loglevel="FATAL",
                            bestpath=False, topn=8, silprob=0.1, beam=1e-64, pbeam=1e-64)
        try:
            decoder = Decoder(config)
        except (RuntimeError, ValueError) as exc:
            raise SttModelError(
                f"pocketsphinx cannot load its model from {self.model} (setting speech.pocketsphinx_model): {exc}"
            ) from None
        if kind != "phone":
            for word, phones in self._extra_words.items():
                try:
                    decoder.add_word(word, phones, False)
                except (RuntimeError, ValueError) as exc:
                    raise SttModelError(
                        f"bad pronunciation {phones!r} for {word!r} in {self.extra_dictionary} "
                        f"(setting speech.pocketsphinx_extra_dict): {exc}"
                    ) from None
        return _Decoder(decoder, kind)

    def _borrow(self, kind: DecoderKind) -> _Decoder:
        with self._lock:
            idle = self._idle[kind]
            if idle:
                return idle.pop()
        if kind == "free" and not self.language_model.is_file():
            raise SttModelError(
                f"language model {self.language_model} does not exist (setting speech.pocketsphinx_lm)"
            )
        return self._new_decoder(kind)

    def _give_back(self, dec: _Decoder) -> None:
        with self._lock:
            self._idle[dec.kind].append(dec)

    def known(self, word: str) -> bool:
        with self._lock:
            idle = self._idle["grammar"]
            dec = idle[-1] if idle else None
        if dec is None:
            dec = self._borrow("grammar")
            try:
                return dec.decoder.lookup_word(word) is not None
            finally:
                self._give_back(dec)
        return dec.decoder.lookup_word(word) is not None

    def compile(
        self, grammar: Sequence[str], repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (),
        builtin: str | None = None,
    ) -> tuple[str, list[list[str]], list[str]]:
        """Check the phrases and run words (GrammarError if a word is unknown); the search name, the
        normalised phrases and the normalised run words."""
        hint = "add a line '{word} PH O N E S' (CMU phones) to the file named by speech.pocketsphinx_extra_dict"
        phrases = check_vocabulary(grammar, self.known, hint)
        words = [w for p in check_vocabulary(sequence, self.known, hint) for w in p]
        key = f"{builtin}\n{repeat}\n{' '.join(words)}\n" + "\n".join(" ".join(p) for p in phrases)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return f"g_{digest}", phrases, words

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
        repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
        open_transcript: bool = False,  # no open-vocabulary pass of its own (OpenTranscriptEngine adds one)
        noisy_check: bool = False,
    ) -> PocketsphinxStream:
        if rate not in (8000, 16000):
            raise ValueError(f"pocketsphinx streams take 8000 or 16000 Hz audio, got {rate}")
        if grammar is None:
            return PocketsphinxStream(self, self._borrow("free"), rate, None)
        search, phrases, words = self.compile(grammar, repeat, sequence, builtin)
        dec = self._borrow("grammar")
        try:
            if search not in dec.grammars:
                if len(dec.grammars) >= MAX_GRAMMARS_PER_DECODER:
                    oldest = next(iter(dec.grammars))
                    dec.decoder.remove_search(oldest)
                    del dec.grammars[oldest]
                dec.decoder.add_jsgf_string(search, to_jsgf("turn", phrases, repeat, words, builtin))
                dec.grammars[search] = ([" ".join(p) for p in phrases], words, repeat, builtin)
            return PocketsphinxStream(self, dec, rate, search)
        except (RuntimeError, ValueError) as exc:
            self._give_back(dec)
            raise GrammarError(f"pocketsphinx rejected the grammar: {exc}") from None
        except BaseException:
            self._give_back(dec)
            raise
