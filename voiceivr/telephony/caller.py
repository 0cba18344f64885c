"""``voiceivr call``: a real SIP caller for trying and testing the IVR without a phone.

It runs its own pjsua2 endpoint (one per process, like every pjsua2 user here) through the same
:class:`~voiceivr.telephony.edge.SipEdge` as the server, places one call, and runs a :class:`CallerScript`
as the call's handler:

1. ``--wait-prompt S``: wait (at most S seconds) for the agent to speak and then fall silent;
2. ``--play FILE.wav`` (repeatable) and ``--say TEXT`` (repeatable, needs a TTS engine): send audio, in order;
3. ``--dtmf STRING``: send digits; in the string ``,`` pauses 0.5 s and ``w`` waits for the agent's next prompt
   to end (so ``1234w#`` keys a PIN, waits for the answer, then keys ``#``);
4. listen until ``--duration`` seconds after answer or until the far end hangs up, then hang up.

Everything heard is kept (``--record heard.wav``); agent speech is found in the audio itself (frame energy
with a 300 ms hangover), so the summary's timings are what a caller would hear, not what the server logged.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS
from voiceivr.call.handler import CallControl, CallEvents, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel, PlayedMark
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings, SipSettings
from voiceivr.telephony.edge import EdgeConfig, SipEdge
from voiceivr.telephony.sipmsg import host_of

SPEECH_DBFS = -45.0  # a frame louder than this counts as agent audio
HANGOVER_MS = 300  # silence this long ends a stretch of agent audio
END_OF_PROMPT_MS = 800  # silence this long after agent audio: the prompt is over


class CallerError(VoiceivrError):
    """The test call could not be placed or scripted."""


def read_wav_mono(path: Path, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """A WAV file as mono int16 at ``rate`` (channels averaged, linear resampling: good enough to test with)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise CallerError(f"{path}: {8 * w.getsampwidth()}-bit WAV; only 16-bit PCM is supported")
            channels, src_rate = w.getnchannels(), w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (OSError, wave.Error, EOFError) as exc:
        raise CallerError(f"{path}: not a readable WAV file ({exc})") from None
    samples = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.astype(np.float64)
    if src_rate != rate and len(samples):
        n_out = round(len(samples) * rate / src_rate)
        samples = np.interp(np.arange(n_out) * src_rate / rate, np.arange(len(samples)), samples)
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def frame_dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return 20 * np.log10(max(rms, 1e-9) / 32768.0)


@dataclass
class Segment:
    start: float
    end: float | None = None


@dataclass
class CallerReport:
    uri: str
    answered: bool = False
    setup_s: float | None = None  # INVITE sent -> answered with media
    duration_s: float = 0.0
    codec: str = ""
    sip_call_id: str = ""
    hangup_by: str = ""
    status: int = 0
    reason: str = ""
    agent_audio: list[Segment] = field(default_factory=list)
    played: list[dict[str, Any]] = field(default_factory=list)
    dtmf: list[dict[str, Any]] = field(default_factory=list)
    dtmf_received: list[str] = field(default_factory=list)
    prompt_waits: list[dict[str, Any]] = field(default_factory=list)
    recorded: str | None = None
    transcript: str | None = None
    frames_heard: int = 0

    @property
    def first_agent_audio_s(self) -> float | None:
        return self.agent_audio[0].start if self.agent_audio else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "answered": self.answered,
            "setup_s": self.setup_s,
            "duration_s": round(self.duration_s, 3),
            "codec": self.codec,
            "sip_call_id": self.sip_call_id,
            "hangup": {"by": self.hangup_by, "status": self.status, "reason": self.reason},
            "first_agent_audio_s": self.first_agent_audio_s,
            "agent_audio": [{"start": round(s.start, 3), "end": None if s.end is None else round(s.end, 3)}
                            for s in self.agent_audio],
            "played": self.played,
            "dtmf_sent": self.dtmf,
            "dtmf_received": self.dtmf_received,
            "prompt_waits": self.prompt_waits,
            "recorded": self.recorded,
            "transcript": self.transcript,
        }


@dataclass
class CallerPlan:
    play: list[tuple[str, np.ndarray[Any, np.dtype[np.int16]]]] = field(default_factory=list)  # (label, pcm)
    dtmf: str = ""
    dtmf_method: str = "rfc4733"
    wait_prompt_s: float = 0.0
    duration_s: float = 10.0


class CallerScript:
    """The caller's side of one call: a CallHandler whose worker runs the plan. Times are from answer."""

    def __init__(self, plan: CallerPlan, report: CallerReport, t_dialed: float) -> None:
        self.plan = plan
        self.report = report
        self.t_dialed = t_dialed
        self.t0 = 0.0
        self.heard: list[bytes] = []
        self.done = threading.Event()
        self._voiced_ms = 0
        self._silent_ms = 0
        self._media: MediaChannel | None = None
        self._control: CallControl | None = None
        self._ended = threading.Event()

    # CallHandler
    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        self.t0 = time.monotonic()
        self.report.answered = True
        self.report.setup_s = round(self.t0 - self.t_dialed, 3)
        self.report.codec = info.codec
        self.report.sip_call_id = info.sip_call_id
        self._media, self._control = media, control
        threading.Thread(target=self._listen, name="caller-listen", daemon=True).start()
        threading.Thread(target=self._script, name="caller-script", daemon=True).start()
        return self

    # CallEvents
    def on_dtmf(self, digit: str, method: str) -> None:
        self.report.dtmf_received.append(digit)

    def on_media_moved(self, new_address: MediaAddress | None) -> None:
        pass

    def on_dialog_replaced(self, reason: str) -> None:
        pass

    def on_remote_hangup(self) -> None:
        self._ended.set()

    # ------------------------------------------------------------------------------------------ threads

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _listen(self) -> None:
        assert self._media is not None
        media = self._media
        while True:
            frame = media.read(timeout=0.5)
            if frame is None:
                if media.closed:
                    break
                continue
            self.heard.append(frame.pcm)
            self._track(frame.pcm, (frame.seq + 1) * FRAME_MS / 1000.0)
        self._close_segment(len(self.heard) * FRAME_MS / 1000.0)
        self._ended.set()

    def _track(self, pcm: bytes, t_end: float) -> None:
        segments = self.report.agent_audio
        if frame_dbfs(pcm) > SPEECH_DBFS:
            self._silent_ms = 0
            self._voiced_ms += FRAME_MS
            if not segments or segments[-1].end is not None:
                segments.append(Segment(start=t_end - FRAME_MS / 1000.0))
        else:
            self._silent_ms += FRAME_MS
            if segments and segments[-1].end is None and self._silent_ms >= HANGOVER_MS:
                segments[-1].end = t_end - self._silent_ms / 1000.0

    def _close_segment(self, t: float) -> None:
        if self.report.agent_audio and self.report.agent_audio[-1].end is None:
            self.report.agent_audio[-1].end = t

    def _wait_end_of_prompt(self, limit_s: float) -> None:
        """Wait until the agent spoke and then stayed silent END_OF_PROMPT_MS, or ``limit_s`` passed."""
        start = self.now()
        spoke_before = len(self.report.agent_audio)
        heard = False
        while not self._ended.is_set() and self.now() - start < limit_s:
            segs = self.report.agent_audio
            heard = heard or len(segs) > spoke_before or bool(segs and segs[-1].end is None)
            if heard and segs[-1].end is not None and self._silent_ms >= END_OF_PROMPT_MS:
                break
            self._ended.wait(0.02)
        self.report.prompt_waits.append({"start": round(start, 3), "end": round(self.now(), 3), "heard": heard})

    def _play(self, label: str, pcm: np.ndarray[Any, np.dtype[np.int16]], prompt_id: int) -> None:
        assert self._media is not None
        media = self._media
        n = media.frame_bytes // 2
        if len(pcm) % n:
            pcm = np.concatenate([pcm, np.zeros(n - len(pcm) % n, dtype=np.int16)])
        start = self.now()
        frames = len(pcm) // n
        for i in range(frames):
            media.play(pcm[i * n:(i + 1) * n].astype("<i2").tobytes(), PlayedMark(prompt_id, (i + 1) * n,
                                                                                 i == frames - 1))
        while media.queued_frames() and not self._ended.is_set():
            self._ended.wait(0.02)
        self.report.played.append({"what": label, "start": round(start, 3), "end": round(self.now(), 3)})

    def _script(self) -> None:
        assert self._control is not None
        plan = self.plan
        try:
            if plan.wait_prompt_s > 0:
                self._wait_end_of_prompt(plan.wait_prompt_s)
            for i, (label, pcm) in enumerate(plan.play, start=1):
                if self._ended.is_set():
                    break
                self._play(label, pcm, i)
            for ch in plan.dtmf:
                if self._ended.is_set():
                    break
                if ch == ",":
                    self._ended.wait(0.5)
                elif ch in "wW":
                    self._wait_end_of_prompt(max(plan.wait_prompt_s, 10.0))
                else:
                    self.report.dtmf.append({"digit": ch, "t": round(self.now(), 3)})
                    send = getattr(self._control, "send_dtmf", None)
                    if send is None:
                        raise CallerError("this CallControl cannot send DTMF")
                    send(ch, plan.dtmf_method)
                    self._ended.wait(0.25)  # 160 ms tone + gap
            remaining = plan.duration_s - self.now()
            if remaining > 0:
                self._ended.wait(remaining)
        finally:
            if not self._ended.is_set():
                self._control.hangup("caller script finished")
            self.done.set()

    def write_heard(self, path: Path, rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(b"".join(self.heard))


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
        if not slot.ended.wait(plan.duration_s + plan.wait_prompt_s + 60):
            edge.call(lambda: edge._hangup(slot.key, "agent", "caller timeout"))
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


def format_report(report: CallerReport) -> str:
    lines = [f"call to {report.uri}: " + ("answered" if report.answered else f"not answered ({report.status} "
                                                                           f"{report.reason})")]
    if report.answered:
        lines.append(f"  setup {report.setup_s:.3f} s, codec {report.codec}, lasted {report.duration_s:.1f} s, "
                     f"hung up by {report.hangup_by} ({report.status} {report.reason})")
        if report.agent_audio:
            spans = ", ".join(f"{s.start:.2f}-{'?' if s.end is None else f'{s.end:.2f}'}"
                              for s in report.agent_audio)
            lines.append(f"  agent audio (s from answer): {spans}")
        else:
            lines.append("  agent audio: none heard")
        for p in report.played:
            lines.append(f"  played {p['what']}: {p['start']:.2f}-{p['end']:.2f} s")
        if report.dtmf:
            lines.append(f"  sent {len(report.dtmf)} DTMF digit(s) from {report.dtmf[0]['t']:.2f} s")
        if report.recorded:
            lines.append(f"  recorded what it heard: {report.recorded}")
        if report.transcript is not None:
            lines.append(f"  heard: {report.transcript}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- speech (engines in voiceivr/speech)
# ``--say`` and ``--transcribe`` use the engine interfaces of voiceivr/speech/base.py. Which engine is named
# like the call handler: ``--tts`` / ``--stt`` (or VOICEIVR_CALL_TTS / VOICEIVR_CALL_STT) give a
# ``package.module:factory`` called with the settings.


def _engine(spec: str, option: str, settings: Settings) -> Any:
    from voiceivr.telephony.worker import load_factory

    if not spec:  # the engines the settings name (speech.tts_engine / speech.stt_engine)
        from voiceivr.speech.registry import build_stt, build_tts

        return build_tts(settings) if option == "--tts" else build_stt(settings, workers=0)
    return load_factory(spec, option, settings)


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
