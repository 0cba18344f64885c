"""``voiceivr speak`` and ``voiceivr transcribe``: the speech engines from the command line."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click
import numpy as np

from voiceivr.app import AppContext, pass_app
from voiceivr.audio.frames import split_frames
from voiceivr.audio.resample import resample
from voiceivr.audio.wav import read_wav, write_wav
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings


def _with_engine(settings: Settings, key: str, engine: str | None) -> Settings:
    if not engine:
        return settings
    speech = dataclasses.replace(settings.speech)
    setattr(speech, key, engine)
    return dataclasses.replace(settings, speech=speech)


def read_phrases(path: Path) -> list[str]:
    """One phrase per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VoiceivrError(f"{path}: cannot read the grammar file: {exc.strerror}") from None
    phrases = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not phrases:
        raise VoiceivrError(f"{path}: the grammar file has no phrases (one phrase per line)")
    return phrases


@click.command()
@click.argument("text")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="WAV file to write."
)
@click.option("--engine", help="TTS engine (default: speech.tts_engine): espeak-ng, piper, coqui.")
@click.option("--rate", type=int, default=8000, show_default=True, help="Sample rate of the output.")
@click.option("--encoding", type=click.Choice(["pcm16", "mulaw", "alaw"]), default="pcm16", show_default=True)
@pass_app
def speak(app: AppContext, text: str, output: Path, engine: str | None, rate: int, encoding: str) -> None:
    """Synthesise TEXT into a WAV file, streaming, and say how fast the first audio came."""
    from voiceivr.speech.registry import build_tts

    if rate <= 0:
        raise VoiceivrError(f"--rate must be positive, got {rate}")
    tts = build_tts(_with_engine(app.settings, "tts_engine", engine))
    t0 = time.perf_counter()
    first_audio: float | None = None
    pcms = []
    words = 0
    for chunk in tts.stream(text, rate):
        if first_audio is None and len(chunk.pcm):
            first_audio = time.perf_counter() - t0
        pcms.append(chunk.pcm)
        words += len(chunk.words)
    total = time.perf_counter() - t0
    pcm = np.concatenate(pcms) if pcms else np.zeros(0, dtype=np.int16)
    write_wav(output, pcm.astype(np.int16), rate, encoding)  # type: ignore[arg-type]
    click.echo(
        f"{output}: {len(pcm) / rate:.2f} s at {rate} Hz ({encoding}), {words} word marks, voice {tts.voice}; "
        f"first audio after {1000 * (first_audio or 0):.1f} ms, all after {1000 * total:.1f} ms"
    )


@click.command()
@click.argument("wav", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--engine", help="STT engine (default: speech.stt_engine): pocketsphinx, vosk.")
@click.option("--grammar", "grammar_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of expected phrases, one per line (default: free speech).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def transcribe(app: AppContext, wav: Path, engine: str | None, grammar_file: Path | None, as_json: bool) -> None:
    """Recognise the speech in WAV, fed 20 ms at a time as on a call; print text, confidence and timings."""
    from voiceivr.speech.registry import build_stt

    grammar = read_phrases(grammar_file) if grammar_file else None
    audio = read_wav(wav)
    t_load = time.perf_counter()
    stt = build_stt(_with_engine(app.settings, "stt_engine", engine), workers=0)
    load_s = time.perf_counter() - t_load
    rates = stt.capabilities.rates
    rate = audio.rate if audio.rate in rates else (max(rates) if audio.rate > min(rates) else min(rates))
    pcm = resample(audio.mono(), audio.rate, rate)
    t0 = time.perf_counter()
    stream = stt.stream(rate, grammar)
    partials = 0
    for frame in split_frames(pcm, rate):
        if stream.feed(frame) is not None:
            partials += 1
    result = stream.finish()
    wall = time.perf_counter() - t0
    report = {
        "file": str(wav),
        "engine": stt.name,
        "grammar": grammar is not None,
        "text": result.text,
        "confidence": round(result.confidence, 3),
        "audio_seconds": round(result.audio_seconds, 3),
        "decode_seconds": round(wall, 4),
        "real_time_factor": round(wall / result.audio_seconds, 4) if result.audio_seconds else None,
        "final_latency_ms": round(1000 * result.decode_seconds, 2),
        "partials": partials,
        "model_load_seconds": round(load_s, 3),
        "rate": rate,
    }
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    click.echo(result.text if result.text else "(nothing recognised)")
    click.echo(
        f"confidence {result.confidence:.2f}; {result.audio_seconds:.2f} s of audio at {rate} Hz decoded in "
        f"{wall * 1000:.0f} ms (RTF {report['real_time_factor']}); final {report['final_latency_ms']} ms after the "
        f"end of audio; {partials} partials; engine {stt.name}"
    )
