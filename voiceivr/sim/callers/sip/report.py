"""What the SIP test caller heard and did on one call: :class:`CallerReport`, and the timings read off it.

Agent speech is found in the audio itself (frame energy, :data:`SPEECH_DBFS`); :func:`turn_timings` gives
voice-to-voice and barge-in stop times as a caller hears them, not as the server logged them;
:func:`format_report` is what ``voiceivr call`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPEECH_DBFS = -45.0  # a frame louder than this counts as agent audio


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
