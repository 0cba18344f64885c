"""One call's settings: turns, timers, barge-in, prompts, and the per-stage time budgets."""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.settings.fields import setting


@dataclass
class CallSettings:
    end_of_turn_ms: int = setting(
        600, "Silence that ends a caller turn when what was said so far is not a complete expected phrase.",
        min=100, max=5000,
    )
    fast_end_of_turn_ms: int = setting(
        200, "Silence that ends a turn when the partial transcript already matches an expected phrase.",
        min=20, max=5000,
    )
    end_of_turn_partial_lag: int = setting(
        0,
        "turn_detector = rules: words the recogniser's partial transcript may lag the audio by (pocketsphinx leaves "
        "out the word it is still decoding until the final). 1: a partial that is a whole expected phrase but for its "
        "last word ('cancel my' of 'cancel my card') ends the turn after fast_end_of_turn_ms as a whole phrase "
        "does (smart_turn always grants it; digit entries are not granted it). 0: only a whole phrase does. Off by "
        "default: on dev it brought the median menu answer from 624 to 240 ms but not the p95 of all turns "
        "(docs/speech.md, 'End of turn').",
        min=0, max=1,
    )
    energy_end_of_turn: bool = setting(
        True,
        "End a turn whose partial transcript is already a complete expected phrase once the caller's level has "
        "stayed quiet (end_of_turn_quiet_db, end_of_turn_drop_db) for fast_end_of_turn_ms, without waiting for "
        "the VAD's end of speech (Silero reports it about 200 ms after the audible end).",
    )
    end_of_turn_quiet_db: float = setting(
        6.0, "For the energy end of turn, caller frames less than this far over the line's noise floor are quiet...",
        min=0, max=60,
    )
    end_of_turn_drop_db: float = setting(
        30.0, "...and so are frames this far under the loudest frame of the turn (the floor can lag the line).",
        min=0, max=96,
    )
    turn_detector: str = setting(
        "rules",
        "What ends a caller turn that is not already a whole expected phrase: 'rules' the VAD's end of speech and "
        "end_of_turn_ms; 'smart_turn' the end-of-turn model (Smart Turn v3.2, inside the pipecat-ai wheel), asked "
        "after smart_turn_quiet_ms of quiet, with turn_max_silence_ms as the longest wait and turn_entry_wait_ms "
        "for a digit entry the grammar says is unfinished (docs/speech.md, 'End of turn'). A dialplan node's turn: "
        "can choose otherwise.",
        choices=("rules", "smart_turn"),
    )
    smart_turn_model: str = setting(
        "", "Smart Turn v3 .onnx file. Empty: smart-turn-v3.2-cpu.onnx inside the installed pipecat-ai wheel."
    )
    smart_turn_threshold: float = setting(
        0.9, "smart_turn: the model's probability of a complete turn at or above which the turn ends (0.5, the "
        "model's own, cut 2 to 4 times as many mid-turn pauses: docs/benchmarks.md).", min=0, max=1
    )
    smart_turn_quiet_ms: int = setting(
        200, "smart_turn: quiet after speech (by level, as energy_end_of_turn) before the model is asked.",
        min=20, max=5000,
    )
    smart_turn_every_ms: int = setting(
        250, "smart_turn: while the quiet goes on, the model is asked again this often (each decision costs "
        "tens of ms of CPU on the call's worker: docs/benchmarks.md).", min=20, max=5000,
    )
    turn_max_silence_ms: int = setting(
        800, "smart_turn: quiet that ends a turn whatever the model says (longer than callers' mid-turn pauses).",
        min=100, max=10000,
    )
    turn_entry_wait_ms: int = setting(
        800, "smart_turn: quiet that ends a digit entry with fewer digits than its grammar needs, one more granted "
        "for the recogniser's lagging partial (a caller reading a number in groups pauses between them); the model "
        "is not asked. A node that expects longer pauses (a card read off) sets its own turn: entry_wait_ms.",
        min=100, max=10000,
    )
    open_transcript_answers: bool = setting(
        True,
        "Slot answers and read-backs the grammar recogniser is unsure of get the open transcript too (issue 14; "
        "speech.open_transcript must be on), as menus do: the slot's parser reads both, a value both agree on is "
        "taken, different values are asked again (voiceivr/dialplan/second_opinion.py). Never for a secret (PIN, "
        "code). Off: only menus get it.",
    )
    level_gate: bool = setting(
        False,
        "Turn taking by level as well as by the VAD, for lines with other voices on them (babble), which the VAD "
        "hears as speech without end: a VAD start only opens a turn while the caller's level is level_gate_open_db "
        "over the line's background (else it waits, while the VAD still hears speech, for the level to rise), and "
        "a turn ends once the level has not been that loud for level_gate_end_ms, whatever the VAD says. The "
        "background is the 20th percentile of the last 3 s of 100 ms levels (voiceivr/call/levelgate.py).",
    )
    level_gate_open_db: float = setting(
        12.0, "Level over the line's background (100 ms mean) at which speech the VAD hears is the caller's.",
        min=0, max=60,
    )
    level_gate_end_ms: int = setting(
        1000, "Not loud by level this long ends a turn the VAD still hears speech in (longer than the VAD's own end "
        "plus end_of_turn_ms on a quiet line, so that it only decides where the VAD cannot).", min=100, max=10000,
    )
    max_utterance_s: float = setting(
        15.0, "Longest caller turn; the turn is closed after this much speech.", min=1, max=120
    )
    preroll_ms: int = setting(
        300, "Audio before the detected onset that is also sent to the recogniser.", min=0, max=2000
    )
    barge_in: bool = setting(True, "Caller speech or a key press stops an interruptible prompt.")
    barge_in_min_speech_ms: int = setting(
        100, "Speech needed (from its onset) before it may interrupt a prompt.",
        min=0, max=2000,
    )
    barge_in_hold: str = setting(
        "energy",
        "When an interruptible prompt goes quiet for caller speech, before the barge-in is decided: 'energy' at "
        "the first caller frame barge_in_hold_db over the line's noise floor (undone after barge_in_hold_confirm_ms "
        "if the VAD hears no speech), 'vad' at the VAD's first speech window, 'off' only at the barge-in.",
        choices=("energy", "vad", "off"),
    )
    barge_in_hold_db: float = setting(
        12.0, "Caller frame level over the noise floor that holds a prompt (energy).", min=0, max=96
    )
    barge_in_hold_confirm_ms: int = setting(
        160, "An energy hold the VAD has not confirmed as speech within this long is released (the prompt goes on).",
        min=20, max=2000,
    )
    backchannel: str = setting(
        "stop",
        "What short acknowledgements (uh-huh, okay) do during a prompt: 'stop' treats them as barge-in; "
        "'ignore' lets the prompt go on (barge-in then waits for backchannel_max_ms of speech or a "
        "non-backchannel word).",
        choices=("stop", "ignore"),
    )
    backchannel_words: list[str] = setting(
        ["uh huh", "uh-huh", "mm hmm", "mhm", "mm", "hmm", "okay", "ok", "yeah", "yep", "right", "sure", "alright"],
        "Phrases counted as backchannels (with backchannel = ignore; a run of them, 'okay okay', is one too). A short "
        "sound with no word in it (a cough, a door) lets the prompt go on as well; any other word cuts it.",
    )
    backchannel_word_ms: int = setting(
        300, "With backchannel = ignore, a recognised word that is no backchannel cuts the prompt only after this much "
        "speech (a recogniser's first partial words are guesses: 'okay' began as 'the').", min=0, max=2000,
    )
    backchannel_max_ms: int = setting(
        900, "Speech longer than this is never a backchannel (as the VAD counts it: it hears a 500 ms 'okay' for about "
        "700 ms).", min=0, max=5000,
    )
    echo_suppression: bool = setting(
        True, "Remove the echo of our own prompts from the caller channel before the VAD listens."
    )
    lookahead_ms: int = setting(
        400, "Agent audio queued ahead of the media clock (barge-in drops it all at once).",
        min=20, max=2000,
    )
    idle_sleep_s: float = setting(
        30.0, "After this much caller silence the call sleeps: no reprompts, only the VAD listens.",
        min=1, max=3600,
    )
    idle_hangup_s: float = setting(
        60.0, "After this much caller silence the call says goodbye and ends.", min=1, max=3600
    )
    idle_goodbye: str = setting(
        "It seems you have stepped away. Please call again any time. Goodbye.", "Said before an idle hang-up."
    )
    no_progress_hangup_s: float = setting(
        180.0,
        "A call whose conversation has not moved on for this long says no_progress_goodbye and ends, whatever "
        "keys or words keep arriving: input counts as progress only when the answer to it says something this call "
        "has not said before (a repeat, a reprompt or a menu heard before does not). 0 = no limit.",
        off=0, min=30, max=86400,
    )
    no_progress_goodbye: str = setting(
        "We don't seem to be getting anywhere. Please call again any time. Goodbye.",
        "Said before a no-progress hang-up.",
    )
    max_duration_s: float = setting(
        1800.0,
        "Longest call: after this long the call says max_duration_goodbye (cutting any prompt) and hangs up. "
        "0 = no limit. Behind Kamailio a call still up a minute later is ended there (a BYE to the caller).",
        off=0, min=1, max=86400,
    )
    max_duration_goodbye: str = setting(
        "This call has reached its time limit. Please call again if you need more help. Goodbye.",
        "Said before a max-duration hang-up.",
    )


@dataclass
class BudgetSettings:
    """Milliseconds per stage of a turn (see voiceivr/call/budget.py for what each one measures)."""

    capture: float = setting(
        250.0, "End of caller speech -> final transcript, end-of-turn wait included.", min=1, max=10_000
    )
    intent: float = setting(60.0, "Transcript or digits -> intent decided (all router tiers).", min=1, max=10_000)
    policy: float = setting(30.0, "Safe-path gate decisions of a turn.", min=1, max=10_000)
    tool: float = setting(250.0, "Actions run in a turn.", min=1, max=10_000)
    synthesis: float = setting(60.0, "Response decided -> its first audio frame queued.", min=1, max=10_000)
    e2e: float = setting(400.0, "End of caller speech -> first agent audio sent (voice to voice).", min=1, max=10_000)

    def of(self, stage: str) -> float:
        return float(getattr(self, stage))
