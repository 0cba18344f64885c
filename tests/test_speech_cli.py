"""`voiceivr speak` and `voiceivr transcribe` through click's runner, on real engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.speech_fixtures import AUDIO, entries
from voiceivr.audio.wav import read_wav
from voiceivr.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no voiceivr.toml from the developer's checkout
    return CliRunner()


def test_speak_writes_a_wav_at_the_asked_rate(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = runner.invoke(cli, ["speak", "Welcome to First Bank.", "-o", str(out), "--rate", "8000",
                                 "--encoding", "mulaw"])
    assert result.exit_code == 0, result.output
    assert "first audio after" in result.output and "4 word marks" in result.output
    audio = read_wav(out)
    assert audio.rate == 8000 and audio.encoding == "mulaw" and audio.duration > 0.5


def test_transcribe_with_a_grammar_file_as_json(runner: CliRunner, tmp_path: Path) -> None:
    grammar = tmp_path / "menu.txt"
    grammar.write_text("# what the main menu expects\ncheck my balance\ntransfer money\n\ntalk to an agent\n")
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "agent" and x["voice"] == "piper-joe")
    result = runner.invoke(cli, ["transcribe", str(AUDIO / e["file"]), "--grammar", str(grammar), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["text"] == "talk to an agent" and report["grammar"] is True
    assert 0 < report["confidence"] <= 1 and report["real_time_factor"] < 1
    assert report["audio_seconds"] == pytest.approx(len(read_wav(AUDIO / e["file"]).pcm) / 8000, abs=0.02)


def test_transcribe_text_output_and_wide_band_input(runner: CliRunner, tmp_path: Path) -> None:
    wav = tmp_path / "wide.wav"
    assert runner.invoke(cli, ["speak", "goodbye", "-o", str(wav), "--rate", "22050"]).exit_code == 0
    grammar = tmp_path / "g.txt"
    grammar.write_text("goodbye\nmain menu\n")
    result = runner.invoke(cli, ["transcribe", str(wav), "--grammar", str(grammar)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "goodbye" and "at 16000 Hz" in result.output


def test_errors_are_one_line_without_traceback(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    wav = AUDIO / "nonspeech" / "dtmf.wav"
    result = runner.invoke(cli, ["transcribe", str(wav), "--grammar", str(empty)])
    assert result.exit_code == 1 and "no phrases" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["transcribe", str(wav), "--engine", "vosk"])
    assert result.exit_code != 0 and "speech.vosk_model" in result.output
    result = runner.invoke(cli, ["speak", "hi", "-o", str(tmp_path / "x.wav"), "--engine", "nope"])
    assert result.exit_code == 2 and "speech.tts_engine = 'nope' is not an engine" in result.output
    not_wav = tmp_path / "n.wav"
    not_wav.write_text("hello")
    result = runner.invoke(cli, ["transcribe", str(not_wav)])
    assert result.exit_code == 1 and "not a WAV file" in result.output
