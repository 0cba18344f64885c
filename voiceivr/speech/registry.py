"""Engines chosen by configuration: ``speech.vad_engine``, ``speech.stt_engine``, ``speech.tts_engine``.

Each name maps to a factory taking the settings; engines import their libraries only when built, so a
process that never uses vosk never loads it. A process builds each engine once and shares it across calls
(:func:`build_vad` etc. return the same instance for the same settings). Adding an engine is one
``@register_*("name")`` function; call code never tests engine names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from voiceivr.errors import ConfigError
from voiceivr.settings import Settings
from voiceivr.speech.base import SttEngine, TtsEngine, VadEngine

E = TypeVar("E")

VAD_ENGINES: dict[str, Callable[[Settings], VadEngine]] = {}
STT_ENGINES: dict[str, Callable[[Settings], SttEngine]] = {}
TTS_ENGINES: dict[str, Callable[[Settings], TtsEngine]] = {}

_built: dict[tuple[Any, ...], Any] = {}
_built_lock = threading.Lock()


def _register(
    table: dict[str, Callable[[Settings], E]], name: str
) -> Callable[[Callable[[Settings], E]], Callable[[Settings], E]]:
    def decorate(factory: Callable[[Settings], E]) -> Callable[[Settings], E]:
        table[name] = factory
        return factory

    return decorate


def register_vad(name: str) -> Callable[[Callable[[Settings], VadEngine]], Callable[[Settings], VadEngine]]:
    return _register(VAD_ENGINES, name)


def register_stt(name: str) -> Callable[[Callable[[Settings], SttEngine]], Callable[[Settings], SttEngine]]:
    return _register(STT_ENGINES, name)


def register_tts(name: str) -> Callable[[Callable[[Settings], TtsEngine]], Callable[[Settings], TtsEngine]]:
    return _register(TTS_ENGINES, name)


def _pick(table: dict[str, Callable[[Settings], E]], name: str, setting_name: str) -> Callable[[Settings], E]:
    try:
        return table[name]
    except KeyError:
        raise ConfigError(
            f"{setting_name} = {name!r} is not an engine; known: {', '.join(sorted(table))}"
        ) from None


def _once(kind: str, settings: Settings, build: Callable[[], E]) -> E:
    key = (kind, repr(settings.speech), repr(settings.vad))
    with _built_lock:
        if key not in _built:
            _built[key] = build()
        return _built[key]


def build_vad(settings: Settings) -> VadEngine:
    factory = _pick(VAD_ENGINES, settings.speech.vad_engine, "speech.vad_engine")
    return _once("vad", settings, lambda: factory(settings))


def build_stt(settings: Settings, *, workers: int | None = None) -> SttEngine:
    """The recognizer. ``workers`` overrides ``speech.stt_workers``: 0 runs it in this process, N > 0 in N
    worker processes (use that in any process that carries live media: see docs/speech.md)."""
    _pick(STT_ENGINES, settings.speech.stt_engine, "speech.stt_engine")  # an unknown name fails here, at once
    n = settings.speech.stt_workers if workers is None else workers
    if n < 0:
        raise ConfigError(f"speech.stt_workers must be 0 or more, got {n}")
    if n == 0:
        return build_stt_in_process(settings)
    from voiceivr.speech.stt.remote import RemoteSttEngine

    return _once(f"stt-remote-{n}", settings, lambda: RemoteSttEngine(settings, n, build=build_stt_in_process))


def build_tts(settings: Settings) -> TtsEngine:
    factory = _pick(TTS_ENGINES, settings.speech.tts_engine, "speech.tts_engine")
    return _once("tts", settings, lambda: factory(settings))


def build_prompt_cache(settings: Settings) -> Any:
    from voiceivr.speech.prompts import PromptCache

    tts = build_tts(settings)
    return _once("prompts", settings, lambda: PromptCache(settings.prompt_cache_dir(), tts))


def build_stt_in_process(settings: Settings) -> SttEngine:
    """The real recognizer, never the remote wrapper (what a worker process runs), with the open transcript on
    unsure turns when ``speech.open_transcript`` asks for it."""
    factory = _pick(STT_ENGINES, settings.speech.stt_engine, "speech.stt_engine")
    return _once("stt", settings, lambda: _with_open_transcript(settings, factory(settings)))


def _with_open_transcript(settings: Settings, engine: SttEngine) -> SttEngine:
    if settings.speech.open_transcript == "off":
        return engine
    from voiceivr.speech.denoise import build_denoiser
    from voiceivr.speech.stt.open_transcript import LazyTranscriber, OpenTranscriptEngine

    sp = settings.speech
    return OpenTranscriptEngine(engine, LazyTranscriber(sp), sp.open_transcript_below,
                                denoiser=build_denoiser(sp.open_transcript_denoise),
                                noisy_below_db=sp.open_transcript_noisy_db)


# ------------------------------------------------------------------------------------------ the engines


@register_vad("silero")
def _silero(settings: Settings) -> VadEngine:
    from voiceivr.speech.vad import SileroVad, VadConfig

    v = settings.vad
    config = VadConfig(v.threshold, v.neg_threshold, v.min_speech_ms, v.min_silence_ms, v.speech_pad_ms)
    return SileroVad(config, settings.speech.silero_model)


@register_stt("pocketsphinx")
def _pocketsphinx(settings: Settings) -> SttEngine:
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine

    s = settings.speech
    return PocketsphinxEngine(s.pocketsphinx_model, s.pocketsphinx_dict, s.pocketsphinx_extra_dict, s.pocketsphinx_lm,
                              phone_loop_beam=s.pocketsphinx_phone_beam)


@register_stt("vosk")
def _vosk(settings: Settings) -> SttEngine:
    from voiceivr.speech.stt.vosk_stt import VoskEngine

    return VoskEngine(settings.speech.vosk_model)


@register_tts("espeak-ng")
def _espeak(settings: Settings) -> TtsEngine:
    from voiceivr.speech.tts.espeak import EspeakEngine

    s = settings.speech
    return EspeakEngine(s.espeak_voice, s.espeak_wpm, s.espeak_pitch, s.espeak_library, s.espeak_data)


@register_tts("piper")
def _piper(settings: Settings) -> TtsEngine:
    from voiceivr.speech.tts.piper_tts import PiperEngine

    return PiperEngine(settings.speech.piper_voice)


@register_tts("coqui")
def _coqui(settings: Settings) -> TtsEngine:
    from voiceivr.speech.tts.coqui_tts import CoquiEngine

    return CoquiEngine(settings.speech.coqui_model, settings.speech.coqui_config)
