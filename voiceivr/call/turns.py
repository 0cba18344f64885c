"""Turn detection: where the caller's speech starts and where their turn ends.

:class:`TurnDetector` watches the caller channel after echo removal: the VAD (its start and end events, its
tentative onset), the level gate (other voices on the line), the line's level against its noise floor, and
which side of the call the line carries (the caller, or our own prompt coming back). It answers the
session's questions -- is this onset our echo, has the caller gone quiet long enough, is the turn over -- and
keeps the pre-roll that a new turn's recogniser is fed first. :class:`Turn` is one stretch of caller speech.
The session (:mod:`voiceivr.call.session`) opens and ends turns and decides what they mean.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Frame, Pcm
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.bargein import Heard, Rules, grammar_over_prompt
from voiceivr.call.budget import CallLatencies, EngineCosts
from voiceivr.call.echo import EchoCanceller
from voiceivr.call.levelgate import LevelGate, level_dbfs
from voiceivr.call.media import InboundFrame
from voiceivr.call.turnend import TurnEnding, TurnRules, digit_range, fast_reason, short_of_a_phrase
from voiceivr.call.turnsignals import Offset, Onset, Partial, Signal, StillSpeaking, Tentative, Turn, TurnOver
from voiceivr.dialplan.io import Utterance
from voiceivr.errors import VoiceivrError
from voiceivr.settings import CallSettings
from voiceivr.speech import endofturn
from voiceivr.speech.base import SttEngine, SttResult, SttStream, VadStream
from voiceivr.speech.denoise import DenoiseStream

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000
ECHO = "echo of our prompt"  # Turn.ignored: the onset was our own prompt on the caller channel
UNINTERRUPTIBLE = "during uninterruptible prompt"  # Turn.ignored: no answer to anything


@dataclass(frozen=True)
class TurnEnd:
    """What a finished turn comes to."""

    text: str  # the final transcript (also when secret: the brain needs it, the timeline does not get it)
    secret: bool
    final: ev.TranscriptFinal | None  # for the timeline (None: our own echo)
    answer: Utterance | None = None  # for the brain, when a recogniser heard the turn
    overheard: b.Overheard | None = None  # for the brain: speech over an uninterruptible prompt

    @property
    def speech_ms(self) -> float:  # how long the caller spoke (0: no recogniser heard the turn)
        return 0.0 if self.answer is None else (self.answer.ended_at - self.answer.started_at) * 1000


class TurnDetector:
    """The caller channel's speech, level and echo state for one call. Owned by the session's thread."""

    def __init__(
        self,
        settings: CallSettings,
        *,
        call_id: str,
        rate: int,
        vad: VadStream,
        stt: SttEngine,
        echo: EchoCanceller | None,
        denoise: DenoiseStream | None,
        latency: CallLatencies,
        costs: EngineCosts,
    ) -> None:
        self.s = settings
        self.call_id = call_id
        self.rate = rate
        self.vad = vad
        self.stt_engine = stt
        self.echo = echo
        self.denoise = denoise  # this call's own state
        self.latency = latency
        self.costs = costs
        self.current: Turn | None = None
        self.preroll: deque[Frame] = deque(maxlen=max(1, settings.preroll_ms // FRAME_MS))
        self.dominant: deque[bool] = deque(maxlen=100)  # per frame: the line carries the caller, not our echo
        self.noise_floor = -60.0  # dBFS of the caller channel between words
        self.level = -96.0
        self.loud_onset = False
        self.gate = LevelGate(settings.level_gate_open_db) if settings.level_gate else None
        self.vad_unconfirmed = False  # the VAD hears speech that the level gate did not take for the caller's
        self.track_levels = settings.barge_in_hold == "energy" or settings.energy_end_of_turn
        self._whole_phrases: frozenset[str] = frozenset()  # the grammar's phrases, normalised (complete_phrase)
        self._short_phrases: frozenset[str] = frozenset()  # ... each but for its last word (nearly_phrase)
        self.barge_rules = Rules.of(settings)
        self.turn_rules = TurnRules.of(settings)  # call settings; a node's turn: goes over them (expect)
        self._rules = self.turn_rules
        self._digits = (0, 0)  # fewest and most digits of a digit entry
        self.model: endofturn.SmartTurn | None = None
        if self.turn_rules.detector == "smart_turn":
            self.model = endofturn.load(settings.smart_turn_model)  # a clear error naming the setting if missing
            self.track_levels = True

    def caller_frame(self, inbound: InboundFrame, now: float) -> Frame:
        """The caller's audio of this tick: our echo removed, the line's noise suppressed, its level followed."""
        mic = np.frombuffer(inbound.pcm, dtype="<i2").astype(np.int16)
        sent = None if inbound.sent is None else np.frombuffer(inbound.sent, dtype="<i2").astype(np.int16)
        if self.echo is not None:
            clean = self.echo.process(mic, sent)
            self.dominant.append(self.echo.speech_dominant())
        else:
            clean = mic
            self.dominant.append(True)
        if self.gate is not None:
            # before the suppressor: it turns steady babble into bursts over a lower floor, which the gate's
            # percentile background would take for the caller (measured in docs/speech.md)
            self.gate.feed(level_dbfs(clean))
        if self.denoise is not None:  # after the echo canceller, which needs the line as it was
            before = self.denoise.engine_seconds
            clean = self.denoise.process(clean)
            self.costs.add("denoise", self.denoise.engine_seconds - before)
        self.track_level(clean)
        return Frame(clean, self.rate, now)

    @property
    def gate_loud(self) -> bool:
        """The level gate takes the line for the caller's voice (always, without a gate)."""
        return self.gate is None or self.gate.loud

    def track_level(self, clean: Pcm) -> None:
        """The caller channel's level against its noise floor: a sudden rise is the earliest sign of speech."""
        if not self.track_levels:
            return
        level = level_dbfs(clean)
        self.level = level
        floor = self.noise_floor
        # The floor falls at once and rises slowly (3 dB a second): speech never becomes the floor. It never
        # goes below -70 dBFS, so a line that was digitally silent does not hold the prompt on its first hiss.
        self.noise_floor = max(-70.0, level if level < floor else floor + 3.0 * FRAME_S)
        self.loud_onset = level > -45.0 and level > floor + self.s.barge_in_hold_db

    def hear(self, frame: Frame, now: float) -> Iterator[Signal]:
        """What this caller frame says about turns, in order. The session acts on each signal before the next
        one is made: what it does (open a turn, cut a prompt) is what the rest of the frame is judged against."""
        before = self.vad.engine_seconds
        events = self.vad.feed(frame)
        self.costs.add("vad", self.vad.engine_seconds - before)
        self.preroll.append(frame)
        for e in events:
            if e.kind == "start":
                if self.current is None and not self.gate_loud:
                    self.vad_unconfirmed = True  # other voices on the line: wait for the caller's level
                    continue
                yield Onset(e.t, e.decided_at)
            else:
                self.vad_unconfirmed = False
                yield Offset(e.t)
        if self.vad_unconfirmed and self.current is None and self.gate_loud:
            self.vad_unconfirmed = False
            # the level rose over the background while the VAD heard speech: the caller began about a short
            # window (100 ms) ago
            yield Onset(max(now + FRAME_S - 0.1, 0.0), now + FRAME_S)
        tentative = self.vad.tentative_onset
        if self.current is None and (tentative is not None or self.loud_onset):  # else nothing to hold a prompt for
            yield Tentative(Heard("tentative", vad_onset=tentative is not None,
                                  echo=tentative is not None and self.is_echo(tentative, now),
                                  loud_onset=self.loud_onset, caller_dominant=self.caller_dominant))
        turn = self.current
        if turn is None:
            return
        if turn.ignored == ECHO:
            back = self.echo_became_speech(turn)
            if back is not None:
                self.current = None
                yield Onset(now + FRAME_S - back, now)
            return
        if turn.ending is not None:
            turn.pcm.append(frame.pcm)
        if turn.speaking and turn.stt is not None:
            text = self.feed(turn, frame)
            if text is not None:
                yield Partial(turn, text)
        if turn.barge_pending:
            speech_until = now + FRAME_S if turn.speaking else (turn.last_speech_end or now)
            yield StillSpeaking(turn, Heard("speech", speech_ms=(speech_until - turn.onset) * 1000, words=turn.partial))
        if turn.speaking and now - turn.onset >= self.s.max_utterance_s:
            yield TurnOver(turn, "max_utterance")
            return
        if turn.speaking and self.gate_says_ended(turn, now):
            assert turn.gate_quiet_since is not None
            yield Offset(turn.gate_quiet_since)
            self.vad_unconfirmed = self.vad.speaking  # what the VAD goes on hearing is the background
        if turn.ending is not None:
            if self.ending_says_over(turn, now):
                if turn.speaking:  # the VAD has not said so yet: as the energy end of turn below
                    yield Offset(turn.quiet_since if turn.quiet_since is not None else now)
                    self.vad.reset()
                yield TurnOver(turn, "silence")
            return
        if turn.speaking and self.s.energy_end_of_turn and turn.stt is not None and self.quiet_long_enough(turn, now):
            # The words so far are a whole expected phrase and the line has gone quiet: the VAD would say so
            # about 200 ms later. Its end event for this speech is dropped with a fresh VAD state, so that
            # speech after this turn starts a turn of its own.
            assert turn.quiet_since is not None
            yield Offset(turn.quiet_since)
            self.vad.reset()
            yield TurnOver(turn, "silence")
            return
        if not turn.speaking and turn.last_speech_end is not None and self.silence_ends(turn, now):
            yield TurnOver(turn, "silence")

    @property
    def pending(self) -> bool:
        """A turn is on whose barge-in is pending."""
        return self.current is not None and self.current.barge_pending

    def resumed(self) -> bool:
        """Speech started again within the end-of-turn wait: the same turn goes on (False: no turn)."""
        turn = self.current
        if turn is None:
            return False
        turn.speaking = True
        turn.last_speech_end = None
        return True

    def stopped(self, t: float) -> ev.SpeechStopped | None:
        turn = self.current
        if turn is None:
            return None
        turn.speaking = False
        turn.last_speech_end = t
        if turn.ignored == ECHO:
            self.current = None
        return ev.SpeechStopped(t)

    def begin(self, onset: float, decided_at: float, listen: b.Listen, during_prompt: int | None, *,
              sleeping: bool, now: float) -> tuple[Turn, list[ev.Event]]:
        """A new turn, with its recogniser fed the pre-roll (none while the call sleeps): the turn, and what to
        put on the timeline."""
        events: list[ev.Event] = []
        stt = None
        if not sleeping:
            stt, grammar_error = self.open_stt(listen, now, over_prompt=during_prompt is not None)
            events += [grammar_error] if grammar_error is not None else []
        turn = Turn(onset, decided_at, stt, during_prompt=during_prompt, secret=listen.secret)
        if self._rules.detector == "smart_turn" and self.model is not None and stt is not None:
            turn.ending = TurnEnding(self._rules, whole_phrase=self.complete_phrase, fewest_digits=self._digits[0],
                                     most_digits=self._digits[1], nearly_phrase=self.nearly_phrase)
            turn.pcm.extend(f.pcm for f in self.preroll if f.t < now)  # hear() adds this frame; a little before too
        self.current = turn
        for f in self.preroll:
            if f.end > onset - self.s.preroll_ms / 1000 and stt is not None:
                text = self.feed(turn, f)
                if text is not None and not listen.secret:  # a partial is nothing but its words
                    events.append(ev.TranscriptPartial(now, text=text))
        return turn, events

    def open_stt(self, listen: b.Listen, now: float, over_prompt: bool = False) -> tuple[SttStream, Any]:
        """A recogniser for a new turn, for what the brain listens for, and the note of a rejected grammar (an
        SttGrammarError or None); over a prompt, one that knows backchannels too if it can."""
        grammar = listen.grammar
        wider = grammar_over_prompt(self.barge_rules, grammar) if over_prompt and not listen.builtin else grammar
        second = self.second_opinion(listen)  # unsure: a second, open-vocabulary opinion too
        menu = second and listen.expect == "intent"  # ... and on a noisy line, sure or not (a menu only)
        with contextlib.suppress(VoiceivrError):  # a backchannel without a pronunciation: the node's own grammar
            if wider != grammar and not listen.repeat:
                return self.stt_engine.stream(self.rate, list(wider), open_transcript=second,
                                              noisy_check=menu), None
        try:
            return self.stt_engine.stream(self.rate, list(grammar) if grammar else None, repeat=listen.repeat,
                                          sequence=tuple(listen.sequence), builtin=listen.builtin,
                                          open_transcript=second, noisy_check=menu), None
        except VoiceivrError as exc:
            # A grammar the recogniser cannot take (a word with no pronunciation) is a dialplan bug that the
            # caller must not pay for: listen with free speech instead, and say so loudly.
            log.error("grammar rejected; using free speech for this turn",
                      extra={"call_id": self.call_id, "node": listen.expect, "error": str(exc)})
            note = ev.SttGrammarError(now, node=listen.expect, error=str(exc))
            return self.stt_engine.stream(self.rate, None), note

    def second_opinion(self, listen: b.Listen) -> bool:
        """Does a turn that the grammar is unsure of get an open transcript too? A menu's, and (with
        ``call.open_transcript_answers``) a slot answer's or a read-back's; never a secret's: a PIN or a code
        must not reach a second recogniser, a log or ``TranscriptFinal.open_text``."""
        if listen.secret:
            return False
        return listen.expect == "intent" or (
            self.s.open_transcript_answers and (listen.expect == "confirm" or listen.expect.startswith("slot:")))

    def feed(self, turn: Turn, frame: Frame) -> str | None:
        """Give the turn's recogniser a frame: its new words so far, if they changed."""
        assert turn.stt is not None
        # The pre-roll holds the frame that set the turn off, which the frame loop then feeds again: a
        # repeated 20 ms mid-word turned "check my balance" into "get me a" (6 of 8 calls).
        if frame.end <= turn.fed_until + 1e-6:
            return None
        turn.fed_until = frame.end
        turn.audio.update(frame.pcm.tobytes())
        before = turn.stt.engine_seconds
        result = turn.stt.feed(frame)
        self.costs.add(f"stt.{self.stt_engine.name}", turn.stt.engine_seconds - before)
        if result is not None and result.text and result.text != turn.partial:
            turn.partial = result.text
            return result.text
        return None

    def end(self, turn: Turn, now: float, secret_asked: bool) -> TurnEnd:
        """The turn is over (``secret_asked``: the brain now listens for a secret)."""
        self.current = None
        speech_end = turn.last_speech_end if turn.last_speech_end is not None else now
        if turn.stt is None:
            final = None
            if turn.ignored and turn.ignored != ECHO:
                final = ev.TranscriptFinal(now, text="", speech_start=turn.onset, speech_end=speech_end,
                                           ignored=turn.ignored)
            overheard = None
            if turn.during_prompt is not None and turn.ignored == UNINTERRUPTIBLE:
                overheard = b.Overheard(turn.during_prompt, "speech", turn.onset, speech_end)
            return TurnEnd("", False, final, overheard=overheard)
        result = self._finish(turn, speech_end, now)
        text = result.text.strip()
        secret = turn.secret or secret_asked
        open_text = "" if secret else result.open_text.strip()
        final = ev.TranscriptFinal(now, text="" if secret else text, confidence=result.confidence,
                                   speech_start=turn.onset, speech_end=speech_end, secret=secret, open_text=open_text)
        answer = Utterance(text, result.confidence, turn.onset, speech_end, audio_sha256=turn.audio.hexdigest(),
                           open_text=open_text)
        return TurnEnd(text, secret, final, answer=answer)

    def _finish(self, turn: Turn, speech_end: float, now: float) -> SttResult:
        """The turn's final transcript (its decoding time counts towards the capture stage)."""
        assert turn.stt is not None
        wall = time.perf_counter()
        before = turn.stt.engine_seconds
        result = turn.stt.finish()
        decode_ms = (time.perf_counter() - wall) * 1000
        self.costs.add(f"stt.{self.stt_engine.name}", turn.stt.engine_seconds - before)
        self.latency.record("capture", (now + FRAME_S - speech_end) * 1000 + decode_ms)
        return result

    def cancel(self) -> None:
        """Drop the turn in progress (the call ends, or a limit ran out)."""
        if self.current is not None and self.current.stt is not None:
            self.current.stt.cancel()
        self.current = None

    @property
    def caller_dominant(self) -> bool:
        """The last frame carried the caller more than our echo."""
        return bool(self.dominant) and self.dominant[-1]

    def is_echo(self, onset: float, now: float) -> bool:
        frames = max(1, round((now - onset) / FRAME_S) + 1)
        recent = list(self.dominant)[-frames:]
        return sum(recent) < 0.5 * len(recent)

    def echo_became_speech(self, turn: Turn) -> float | None:
        """Our echo may hide the caller starting to talk over it: once the residual has been the caller's for a
        while, this is speech after all. How long ago it began (seconds), if so."""
        k = max(1, self.s.barge_in_min_speech_ms // FRAME_MS)
        recent = list(self.dominant)[-k:]
        if turn.speaking and len(recent) == k and all(recent):
            return k * FRAME_S
        return None

    def quiet_ms(self, turn: Turn, now: float) -> float:
        """How long the caller's level has been quiet (0: this frame is not).

        Quiet is near the line's noise floor or far under the turn's loudest frame: the floor estimate lags a
        line whose noise just rose (it climbs 3 dB a second), the drop from the peak does not."""
        turn.peak_level = max(turn.peak_level, self.level)
        quiet = self.level < max(self.noise_floor + self.s.end_of_turn_quiet_db,
                                 turn.peak_level - self.s.end_of_turn_drop_db)
        if not quiet:
            turn.quiet_since = None
            return 0.0
        if turn.quiet_since is None:
            turn.quiet_since = now
        return (now + FRAME_S - turn.quiet_since) * 1000

    def quiet_long_enough(self, turn: Turn, now: float) -> bool:
        """Has the caller's level been near the noise floor for fast_end_of_turn_ms after a complete phrase (or,
        with call.end_of_turn_partial_lag, one the lagging partial has not caught up with: fast_words)?"""
        return self.quiet_ms(turn, now) >= self.s.fast_end_of_turn_ms and self.fast_words(turn.partial)

    def ending_says_over(self, turn: Turn, now: float) -> bool:
        """smart_turn: is the turn over (voiceivr/call/turnend.py)? Quiet is by level, or since the VAD's end of
        speech if that is longer (a line whose noise hides the quiet). The model runs here, on the call's worker."""
        assert turn.ending is not None
        quiet = self.quiet_ms(turn, now)
        if not turn.speaking and turn.last_speech_end is not None:
            quiet = max(quiet, (now + FRAME_S - turn.last_speech_end) * 1000)
        if quiet <= 0:
            turn.ending.speech()
            return False

        def ask() -> float:
            assert self.model is not None
            p, seconds = self.model.complete(np.concatenate(list(turn.pcm)), self.rate)
            self.costs.add("endofturn.smart_turn", seconds)
            return p

        return turn.ending.over(quiet, turn.partial, ask if self.model is not None else None)

    def gate_says_ended(self, turn: Turn, now: float) -> bool:
        """Has the caller not been loud over the line's background for level_gate_end_ms, whatever the VAD says?"""
        if self.gate is None or self.gate.loud:
            turn.gate_quiet_since = None
            return False
        if turn.gate_quiet_since is None:
            turn.gate_quiet_since = now
        return (now + FRAME_S - turn.gate_quiet_since) * 1000 >= self.s.level_gate_end_ms

    def silence_ends(self, turn: Turn, now: float) -> bool:
        """Has the silence after the turn's speech lasted the end-of-turn wait (shorter after a whole phrase)?"""
        assert turn.last_speech_end is not None
        wait_ms = self.s.fast_end_of_turn_ms if self.fast_words(turn.partial) else self.s.end_of_turn_ms
        return (now + FRAME_S - turn.last_speech_end) * 1000 >= wait_ms

    def expect(self, listen: b.Listen) -> None:
        """What the brain listens for: the grammar's phrases are whole answers unless a run goes on after pauses."""
        grammar = listen.grammar
        whole = bool(grammar) and not listen.repeat and not listen.builtin  # runs go on after pauses
        self._rules = self.turn_rules.over(listen.turn)
        self._digits = digit_range(listen)
        if self._rules.detector == "smart_turn" and self.model is None:
            try:  # a node asks for the model the call settings do not use
                self.model = endofturn.load(self.s.smart_turn_model)
                self.track_levels = True
            except endofturn.EndOfTurnModelError as exc:
                log.error("end-of-turn model unavailable; this node's turns end by the rules",
                          extra={"call_id": self.call_id, "node": listen.expect, "error": str(exc)})
                self._rules = TurnRules(detector="rules")
        self._whole_phrases = frozenset(" ".join(p.lower().split()) for p in grammar or ()) if whole \
            else frozenset()
        self._short_phrases = short_of_a_phrase(self._whole_phrases)

    def fast_words(self, partial: str) -> bool:
        """rules: do the words so far end the turn after fast_end_of_turn_ms? A whole phrase does; with
        call.end_of_turn_partial_lag, so does a whole phrase but for its last word, which the partial leaves out
        until the final (voiceivr/call/turnend.py). Not a digit entry but for its last digit: on dev, ending those
        400 ms sooner changed pocketsphinx's final and 5 more of 76 were wrong (docs/speech.md)."""
        if self.s.end_of_turn_partial_lag == 0:
            return self.complete_phrase(partial)
        return bool(fast_reason(partial, whole_phrase=self.complete_phrase, nearly_phrase=self.nearly_phrase,
                                lag=self.s.end_of_turn_partial_lag))

    def nearly_phrase(self, partial: str) -> bool:
        """Is the partial transcript a whole phrase of the grammar but for its last word (which the partial
        leaves out until the final: voiceivr/call/turnend.py)?"""
        return bool(partial) and " ".join(partial.lower().split()) in self._short_phrases

    def complete_phrase(self, partial: str) -> bool:
        """Is the partial transcript a whole phrase of the grammar? Asked on every quiet frame after speech."""
        return bool(partial) and " ".join(partial.lower().split()) in self._whole_phrases
