"""What ``voiceivr call --tts`` / ``--stt`` (or VOICEIVR_CALL_TTS / VOICEIVR_CALL_STT) name, built.

As everywhere else, an engine is named by its registered name (espeak-ng, pocketsphinx, ...: the values of
speech.tts_engine and speech.stt_engine); with no name, the engine the settings name is used. For an engine
the registry does not know, ``package.module:factory`` is a callable taking the settings. The natural guess,
an engine's class (``voiceivr.speech.stt.pocketsphinx_stt:PocketsphinxEngine``), means that engine; anything
else that cannot be called with the settings alone is one clear error (it was a TypeError traceback).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Literal

from voiceivr.errors import ConfigError
from voiceivr.settings import Settings
from voiceivr.speech import registry
from voiceivr.speech.base import SttEngine, TtsEngine
from voiceivr.telephony.worker import resolve_factory


def build_engine(spec: str, kind: Literal["tts", "stt"], settings: Settings) -> Any:
    """The engine ``spec`` names for ``--tts`` or ``--stt`` (the configured one when ``spec`` is empty)."""
    option = f"--{kind}"
    table: dict[str, Any] = registry.TTS_ENGINES if kind == "tts" else registry.STT_ENGINES
    factory = resolve_factory(spec, option) if ":" in spec or "." in spec else None
    engine_class = inspect.isclass(factory) and issubclass(factory, TtsEngine if kind == "tts" else SttEngine)
    named = getattr(factory, "name", None) if engine_class else None
    if named in table:
        spec = str(named)
    if not spec or spec in table:
        if spec:
            speech = (dataclasses.replace(settings.speech, tts_engine=spec) if kind == "tts"
                      else dataclasses.replace(settings.speech, stt_engine=spec))
            settings = dataclasses.replace(settings, speech=speech)
        return registry.build_tts(settings) if kind == "tts" else registry.build_stt(settings, workers=0)
    known = ", ".join(sorted(table))
    if factory is None:
        raise ConfigError(f"{option} {spec}: no such engine; known: {known} (or package.module:factory)")
    hint = (f"name the engine instead ({option} {known.split(', ')[0]}; known: {known}), or give a function that "
            "takes the settings and returns the engine")
    what = getattr(factory, "__name__", spec)
    if engine_class:
        raise ConfigError(f"{option} {spec}: {what} is an engine class no engine name builds, not a factory "
                          "taking the settings", hint=hint)
    try:
        inspect.signature(factory).bind(settings)
    except TypeError:  # a class whose constructor takes model paths, a function of two arguments...
        raise ConfigError(f"{option} {spec}: {what} does not take the settings alone, so it is not an engine "
                          "factory", hint=hint) from None
    except ValueError:
        pass  # no signature to check (a builtin): call it and let the caller's type check judge the result
    try:
        return factory(settings)
    except TypeError as exc:  # it took one argument, but not settings (a function of a path, say)
        raise ConfigError(f"{option} {spec}: called with the settings it failed ({exc}), so it is not an engine "
                          "factory", hint=hint) from None
