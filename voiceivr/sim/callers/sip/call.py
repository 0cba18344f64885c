"""The SIP test caller's call plumbing: its own pjsua2 endpoint (a :class:`~voiceivr.telephony.edge.SipEdge`
like the server's) placing one call that runs a :class:`~voiceivr.sim.callers.sip.script.CallerPlan`, the WAV
clips it plays, and the speech engines behind ``--say`` and ``--transcribe``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS
from voiceivr.settings import Settings, SipSettings
from voiceivr.sim.callers.sip.report import CallerReport
from voiceivr.sim.callers.sip.script import CallerError, CallerPlan, CallerScript
from voiceivr.telephony.edge import EdgeConfig, SipEdge
from voiceivr.telephony.sipmsg import host_of


def read_wav_mono(path: Path, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """A WAV file (16-bit PCM, mu-law or A-law) as mono int16 at ``rate``, resampled with anti-aliasing."""
    from voiceivr.audio.resample import resample
    from voiceivr.audio.wav import WavError, read_wav

    try:
        audio = read_wav(path)
    except (OSError, WavError) as exc:
        raise CallerError(f"{path}: not a readable WAV file ({exc})") from None
    pcm = audio.mono()
    return resample(pcm, audio.rate, rate) if audio.rate != rate and len(pcm) else pcm



def place_call(
    sip: SipSettings, uri: str, plan: CallerPlan, record: Path | None = None, bind: str | None = None,
    stt: Any = None,
) -> CallerReport:
    """Place one call and run ``plan`` on it; returns when the call is over."""
    target_host = host_of(uri.split("@", 1)[-1].split(";", 1)[0].split(">", 1)[0].removeprefix("sip:"))
    if bind is None:
        bind = "127.0.0.1" if target_host.startswith("127.") or target_host == "localhost" else "0.0.0.0"
    caller_sip = dataclasses.replace(sip, register_uri="", tls_port=0, tcp=False, port=0, rtp_port_min=0,
                                     rtp_port_max=0, rtp_timeout_s=max(sip.rtp_timeout_s, 0.0))
    edge = SipEdge(EdgeConfig(sip=caller_sip, host=bind, port=0, max_calls=1, name="caller"), handler=None)
    report = CallerReport(uri=uri)
    edge.start()
    try:
        t_dialed = time.monotonic()
        script = CallerScript(plan, report, t_dialed)
        slot = edge.make_call(uri, script, dtmf_method=plan.dtmf_method)
        if not slot.ended.wait(plan.longest_s() + 60):
            edge.call(lambda: edge.hangup(slot.key, "agent", "caller timeout"))
            slot.ended.wait(5)
        script.done.wait(5 if report.answered else 0)
        report.duration_s = time.monotonic() - (script.t0 or t_dialed)
        report.hangup_by = {"agent": "caller", "": "far end", "edge": "caller (edge)"}.get(slot.hangup_by,
                                                                                           slot.hangup_by)
        report.status, report.reason = slot.end_status, slot.end_reason
        report.frames_heard = len(script.heard)
        if stt is not None and report.answered:
            report.transcript = transcribe(stt, script.heard, sip.media_rate)
        if record is not None and report.answered:
            script.write_heard(record, sip.media_rate)
            report.recorded = str(record)
    finally:
        edge.stop()
    return report


# --------------------------------------------------------------------------- speech (engines in voiceivr/speech)
# ``--say`` and ``--transcribe`` use the engine interfaces of voiceivr/speech/base.py. ``--tts`` / ``--stt`` (or
# VOICEIVR_CALL_TTS / VOICEIVR_CALL_STT) name an engine as speech.tts_engine / speech.stt_engine do
# (espeak-ng, pocketsphinx, ...), or give a ``package.module:factory`` called with the settings; without them
# the engines the settings name speak and listen.


def _engine(spec: str, option: str, settings: Settings) -> Any:
    from voiceivr.telephony.speech_option import build_engine

    return build_engine(spec, "tts" if option == "--tts" else "stt", settings)


def synthesize(settings: Settings, text: str, rate: int, tts_spec: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    """``--say``: TEXT spoken by a :class:`~voiceivr.speech.base.TtsEngine`, mono int16 at ``rate``."""
    from voiceivr.speech.base import TtsEngine

    engine = _engine(tts_spec, "--tts", settings)
    if not isinstance(engine, TtsEngine):
        raise CallerError(f"--tts {tts_spec}: {type(engine).__name__} is not a TtsEngine")
    utterance = engine.synthesize(text, rate)
    pcm = np.asarray(utterance.pcm, dtype=np.int16)
    if utterance.rate != rate and len(pcm):
        n_out = round(len(pcm) * rate / utterance.rate)
        pcm = np.interp(np.arange(n_out) * utterance.rate / rate, np.arange(len(pcm)), pcm).astype(np.int16)
    return pcm


def transcriber(settings: Settings, stt_spec: str) -> Any:
    """``--transcribe``: the :class:`~voiceivr.speech.base.SttEngine`, loaded before dialling."""
    from voiceivr.speech.base import SttEngine

    engine = _engine(stt_spec, "--stt", settings)
    if not isinstance(engine, SttEngine):
        raise CallerError(f"--stt {stt_spec}: {type(engine).__name__} is not an SttEngine")
    return engine


def transcribe(engine: Any, heard: list[bytes], rate: int) -> str:
    """What the caller heard, as text: the whole call as one free-speech turn."""
    from voiceivr.audio.frames import Frame

    stream = engine.stream(rate)
    for i, pcm in enumerate(heard):
        stream.feed(Frame.from_bytes(pcm, rate, i * FRAME_MS / 1000.0))
    return str(stream.finish().text)
