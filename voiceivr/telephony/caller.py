"""``voiceivr call``: a real SIP caller for trying and testing the IVR without a phone.

It runs its own pjsua2 endpoint (one per process, like every pjsua2 user here) through the same
:class:`~voiceivr.telephony.edge.SipEdge` as the server, places one call, and runs a list of steps as the
call's handler, in order:

- ``Wait``: wait (at most N seconds) for the agent to speak and then fall silent;
- ``Play``: send audio (a WAV file or ``--say TEXT`` through TTS); with ``barge_after_s`` it waits until the
  agent has been talking that long and then talks over it, as an impatient caller does;
- ``Dtmf``: key digits (``,`` pauses 0.5 s, ``w`` waits for the agent's next prompt to end); the digits may
  come from a function called at that moment (a test fetching a one-time code from the SMS outbox);
- ``Pause`` and ``Hangup``.

After the steps it listens until ``duration_s`` after answer or until the far end hangs up, then hangs up.
Everything heard is kept (``--record heard.wav``); agent speech is found in the audio itself (frame energy
with a 300 ms hangover), and when each frame of the caller's own audio left is read off the media clock,
so :func:`turn_timings` gives voice-to-voice and barge-in stop times as a caller hears them, not as the
server logged them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import wave
from collections.abc import Callable
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
    """A WAV file (16-bit PCM, mu-law or A-law) as mono int16 at ``rate``, resampled with anti-aliasing."""
    from voiceivr.audio.resample import resample
    from voiceivr.audio.wav import WavError, read_wav

    try:
        audio = read_wav(path)
    except (OSError, WavError) as exc:
        raise CallerError(f"{path}: not a readable WAV file ({exc})") from None
    pcm = audio.mono()
    return resample(pcm, audio.rate, rate) if audio.rate != rate and len(pcm) else pcm


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
    error: str = ""

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
            "error": self.error,
            "turns": turn_timings(self),
        }


@dataclass(frozen=True)
class Wait:
    """Wait until the agent has spoken and then been silent END_OF_PROMPT_MS (``limit_s`` at most)."""

    limit_s: float = 10.0


@dataclass(frozen=True)
class Play:
    label: str
    pcm: np.ndarray[Any, np.dtype[np.int16]]
    barge_after_s: float | None = None  # talk over the agent once it has been talking this long


@dataclass(frozen=True)
class Dtmf:
    digits: str | Callable[[], str]  # a function: called when the step runs (e.g. a code read from an SMS)
    label: str = ""


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hangup:
    pass


Step = Wait | Play | Dtmf | Pause | Hangup


@dataclass
class CallerPlan:
    steps: list[Step] = field(default_factory=list)
    dtmf_method: str = "rfc4733"
    duration_s: float = 10.0  # listen until this long after answer (or the far end hangs up)
    # The classic order, for callers that do not list steps: wait for the greeting, play, key digits.
    play: list[tuple[str, np.ndarray[Any, np.dtype[np.int16]]]] = field(default_factory=list)  # (label, pcm)
    dtmf: str = ""
    wait_prompt_s: float = 0.0

    def all_steps(self) -> list[Step]:
        if self.steps:
            return list(self.steps)
        steps: list[Step] = [Wait(self.wait_prompt_s)] if self.wait_prompt_s > 0 else []
        steps += [Play(label, pcm) for label, pcm in self.play]
        if self.dtmf:
            steps.append(Dtmf(self.dtmf))
        return steps

    def longest_s(self) -> float:
        """An upper bound of how long the steps may take, for the caller's own timeout."""
        total = self.duration_s
        for step in self.all_steps():
            if isinstance(step, Wait):
                total += step.limit_s
            elif isinstance(step, Play):
                total += len(step.pcm) / 8000 + (30.0 if step.barge_after_s is not None else 0.0)
            elif isinstance(step, Dtmf) and isinstance(step.digits, str):
                total += 0.5 * len(step.digits) + 10.0 * sum(c in "wW" for c in step.digits)
            elif isinstance(step, Dtmf):
                total += 10.0  # digits from a function: its own wait (e.g. for an SMS) is bounded by it
            elif isinstance(step, Pause):
                total += step.seconds
        return total


def voiced_span(pcm: np.ndarray[Any, np.dtype[np.int16]], rate: int) -> tuple[float, float] | None:
    """Where speech starts and ends in a clip (s from its start): 10 ms windows above -40 dBFS."""
    n = rate // 100
    if len(pcm) < n:
        return None
    x = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    loud = np.flatnonzero(20 * np.log10(np.maximum(np.sqrt((x * x).mean(axis=1)), 1e-9) / 32768) > -40.0)
    if not len(loud):
        return None
    return float(loud[0]) / 100, float(loud[-1] + 1) / 100


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
        self._clip_left: dict[int, float] = {}  # clip (step number) -> when its first frame left
        self.error: Exception | None = None

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
            self._note_played(media)
        self._close_segment(len(self.heard) * FRAME_MS / 1000.0)
        self._ended.set()

    def _note_played(self, media: MediaChannel) -> None:
        """When did the first frame of each clip leave (media-clock time, like the heard frames)?"""
        mark, seq = media.played_position()
        if mark is None or mark.prompt_id in self._clip_left:
            return
        frames_before = mark.end_sample // (media.frame_bytes // 2) - 1
        self._clip_left[mark.prompt_id] = (seq - 1 - frames_before) * FRAME_MS / 1000.0

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

    def _wait_agent_talking(self, after_s: float, limit_s: float = 30.0) -> bool:
        """Wait until the agent has been talking ``after_s`` without a pause (a barge-in's cue)."""
        start = self.now()
        while not self._ended.is_set() and self.now() - start < limit_s:
            segs = self.report.agent_audio
            if segs and segs[-1].end is None and len(self.heard) * FRAME_MS / 1000.0 - segs[-1].start >= after_s:
                return True
            self._ended.wait(0.01)
        return False

    def _play(self, label: str, pcm: np.ndarray[Any, np.dtype[np.int16]], prompt_id: int,
              barge_in: bool = False) -> None:
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
        entry: dict[str, Any] = {"what": label, "start": round(start, 3), "end": round(self.now(), 3)}
        left = self._clip_left.get(prompt_id)
        span = voiced_span(pcm, media.rate)
        if left is not None and span is not None:  # on the media clock, comparable with agent_audio
            entry["speech_start"] = round(left + span[0], 3)
            entry["speech_end"] = round(left + span[1], 3)
        if barge_in:
            entry["barge_in"] = True
        self.report.played.append(entry)

    def _keys(self, digits: str, limit_s: float) -> None:
        assert self._control is not None
        for ch in digits:
            if self._ended.is_set():
                break
            if ch == ",":
                self._ended.wait(0.5)
            elif ch in "wW":
                self._wait_end_of_prompt(max(limit_s, 10.0))
            else:
                self.report.dtmf.append({"digit": ch, "t": round(self.now(), 3)})
                send = getattr(self._control, "send_dtmf", None)
                if send is None:
                    raise CallerError("this CallControl cannot send DTMF")
                send(ch, self.plan.dtmf_method)
                self._ended.wait(0.25)  # 160 ms tone + gap

    def _script(self) -> None:
        assert self._control is not None
        plan = self.plan
        try:
            for i, step in enumerate(plan.all_steps(), start=1):
                if self._ended.is_set():
                    break
                if isinstance(step, Wait):
                    self._wait_end_of_prompt(step.limit_s)
                elif isinstance(step, Play):
                    if step.barge_after_s is not None and not self._wait_agent_talking(step.barge_after_s):
                        self.report.played.append({"what": step.label, "start": round(self.now(), 3),
                                                   "end": None, "barge_in": True, "skipped": "agent never talked"})
                        continue
                    self._play(step.label, step.pcm, i, barge_in=step.barge_after_s is not None)
                elif isinstance(step, Dtmf):
                    self._keys(step.digits if isinstance(step.digits, str) else step.digits(), plan.wait_prompt_s)
                elif isinstance(step, Pause):
                    self._ended.wait(step.seconds)
                elif isinstance(step, Hangup):
                    break
            else:
                remaining = plan.duration_s - self.now()
                if remaining > 0:
                    self._ended.wait(remaining)
        except Exception as exc:  # a failing step (say a code fetch) ends this call with a reason
            self.report.error = f"caller script failed: {exc}"
            self.error = exc
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
        if not slot.ended.wait(plan.longest_s() + 60):
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


def turn_timings(report: CallerReport, gap_s: float = 0.2) -> list[dict[str, Any]]:
    """What the caller experienced at each thing it said, from the audio alone (media-clock seconds).

    For a clip said after the agent fell silent: voice-to-voice, end of the caller's speech -> the first
    agent audio after it. For a barge-in: the agent audio stop, true onset of the caller's speech -> the
    last agent frame before a pause of ``gap_s`` (negative never: a prompt that ended by itself before the
    onset is not a barge-in and gets no figure).
    """
    segs = [(s.start, s.end if s.end is not None else report.duration_s) for s in report.agent_audio]
    out: list[dict[str, Any]] = []
    for p in report.played:
        if "speech_end" not in p:
            continue
        row: dict[str, Any] = {"what": p["what"], "speech_start": p["speech_start"], "speech_end": p["speech_end"]}
        if p.get("barge_in"):
            onset = p["speech_start"]
            talking = [(a, b) for a, b in segs if a <= onset < b + gap_s]
            if talking:
                stop = talking[0][1]
                for a, b in segs:  # segments closer together than gap_s are one stretch of talk
                    if a > stop and a - stop < gap_s:
                        stop = b
                row["barge_in_stop_s"] = round(max(stop - onset, 0.0), 3)
        else:
            after = [a for a, _ in segs if a >= p["speech_end"]]
            if after:
                row["voice_to_voice_s"] = round(after[0] - p["speech_end"], 3)
        out.append(row)
    return out


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
        for turn in turn_timings(report):
            if "voice_to_voice_s" in turn:
                lines.append(f"  {turn['what']}: agent answered {1000 * turn['voice_to_voice_s']:.0f} ms after "
                             "the caller stopped talking")
            elif "barge_in_stop_s" in turn:
                lines.append(f"  {turn['what']}: agent stopped {1000 * turn['barge_in_stop_s']:.0f} ms after "
                             "the caller started talking over it")
        if report.transcript is not None:
            lines.append(f"  heard: {report.transcript}")
        if report.error:
            lines.append(f"  error: {report.error}")
    return "\n".join(lines)


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
