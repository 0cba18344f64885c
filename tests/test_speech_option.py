"""`voiceivr call --tts/--stt`: engine names as the settings use them, an engine's class, and clear errors
for the rest (voiceivr/telephony/speech_option.py), with the real engines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from voiceivr.cli import cli
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings
from voiceivr.sim.callers.sip import synthesize, transcriber
from voiceivr.speech.stt.open_transcript import LazyTranscriber, OpenTranscriptEngine
from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("spec", ["", "pocketsphinx", "voiceivr.speech.stt.pocketsphinx_stt:PocketsphinxEngine"])
def test_stt_by_default_by_name_or_by_its_class(spec: str) -> None:
    engine = transcriber(Settings(), spec)
    # with speech.open_transcript on (the default) the recogniser comes wrapped in its second opinion
    assert isinstance(engine, OpenTranscriptEngine) and isinstance(engine.inner, PocketsphinxEngine)
    # ... whose Whisper is loaded on the first unsure turn (tests/test_open_transcript.py checks that it is not
    # loaded before): this engine is the process's shared one, which an earlier test's call may have used
    assert isinstance(engine.transcriber, LazyTranscriber)
    # ... and the settings for noisy lines reach it (speech.open_transcript_denoise, speech.open_transcript_noisy_db)
    sp = Settings().speech
    assert (engine.denoiser.name if engine.denoiser is not None else "off") == sp.open_transcript_denoise
    assert engine.noisy_below_db == sp.open_transcript_noisy_db
    off = replace(Settings(), speech=replace(Settings().speech, open_transcript="off"))
    assert isinstance(transcriber(off, spec), PocketsphinxEngine)
    assert engine.stream(8000).finish().text == ""  # a working recognizer: nothing fed, nothing heard


def test_tts_by_name() -> None:
    assert len(synthesize(Settings(), "yes", 8000, "espeak-ng")) > 800  # a tenth of a second or more of speech


def _needs_a_path(path: Any) -> Any:
    """One argument, as a factory has, but a path: the settings are not one."""
    return Path(path).stat()


@pytest.mark.parametrize(("spec", "words"), [
    ("sphinx", "--stt sphinx: no such engine; known: pocketsphinx, vosk"),
    ("voiceivr.speech.stt.pocketsphinx_stt:_Decoder", "_Decoder does not take the settings alone"),
    ("tests.test_speech_option:_needs_a_path", "called with the settings it failed"),
    ("voiceivr.nowhere:stt", "--stt = 'voiceivr.nowhere:stt': cannot import voiceivr.nowhere"),
])
def test_what_is_not_an_engine_is_one_clear_error(spec: str, words: str) -> None:
    with pytest.raises(VoiceivrError) as caught:
        transcriber(Settings(), spec)
    assert words in str(caught.value)


def test_the_call_command_says_so_before_dialling(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Port 9 on loopback: nothing is dialled, the engine is refused first.
    result = CliRunner().invoke(cli, ["call", "sip:ivr@127.0.0.1:9", "--transcribe", "--stt",
                                      "voiceivr.speech.stt.pocketsphinx_stt:_Decoder"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("voiceivr: error: --stt voiceivr.speech.stt.pocketsphinx_stt:_Decoder: _Decoder does not take"
            in result.output)
    assert "voiceivr: hint: name the engine instead (--stt pocketsphinx" in result.output
