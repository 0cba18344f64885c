"""``voiceivr call``: a real SIP caller for trying and testing the IVR without a phone.

It runs its own pjsua2 endpoint (one per process, like every pjsua2 user here) through the same
:class:`~voiceivr.telephony.edge.SipEdge` as the server, places one call, and runs a list of steps as the
call's handler, in order:

- ``Wait``: wait (at most N seconds) for the agent to speak and then fall silent;
- ``Play``: send audio (a WAV file or ``--say TEXT`` through TTS); with ``barge_after_s`` it waits until the
  agent has been talking that long and then talks over it, as an impatient caller does;
- ``Dtmf``: key digits (``,`` pauses 0.5 s, ``w`` waits for the agent's next prompt to end); the digits may
  come from a function called at that moment (a test fetching a one-time code from the SMS outbox);
- ``Pause`` and ``Hangup``

(:mod:`voiceivr.sim.callers.steps`: the scripted caller of the call driver runs the same steps).

After the steps it listens until ``duration_s`` after answer or until the far end hangs up, then hangs up.
Everything heard is kept (``--record heard.wav``); agent speech is found in the audio itself (frame energy
with a 300 ms hangover), and when each frame of the caller's own audio left is read off the media clock,
so :func:`turn_timings` gives voice-to-voice and barge-in stop times as a caller hears them, not as the
server logged them.
"""

from voiceivr.sim.callers.sip.call import place_call, read_wav_mono, synthesize, transcribe, transcriber
from voiceivr.sim.callers.sip.report import (
    SPEECH_DBFS,
    CallerReport,
    Segment,
    format_report,
    frame_dbfs,
    turn_timings,
)
from voiceivr.sim.callers.sip.script import (
    END_OF_PROMPT_MS,
    HANGOVER_MS,
    CallerError,
    CallerPlan,
    CallerScript,
    voiced_span,
)
from voiceivr.sim.callers.steps import Dtmf, Hangup, Pause, Play, Step, Wait

__all__ = [
    "END_OF_PROMPT_MS", "HANGOVER_MS", "SPEECH_DBFS", "CallerError", "CallerPlan", "CallerReport", "CallerScript",
    "Dtmf", "Hangup", "Pause", "Play", "Segment", "Step", "Wait", "format_report", "frame_dbfs", "place_call",
    "read_wav_mono", "synthesize", "transcribe", "transcriber", "turn_timings", "voiced_span",
]
