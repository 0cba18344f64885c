"""One call's brain-side worker: turn taking, barge-in, playback, budgets and costs.

The session knows nothing of SIP. It is driven one 20 ms tick at a time by :meth:`CallSession.process`, with the
caller frame of that tick (which also carries the agent frame sent in the same tick), and it queues its own audio
into the call's :class:`~voiceivr.call.media.MediaChannel`. Control events (DTMF, hangup, media moved) arrive
through :meth:`CallSession.post` from any thread and are handled before the next caller audio.
:class:`~voiceivr.call.worker.CallWorker` runs a session on its own thread for a live call; ``voiceivr.replay``
drives the very same object from a recorded call, frame by frame, on a virtual clock.

Its parts decide, the session (which owns the tick) applies: turn detection (:mod:`voiceivr.call.turns`), barge-in
(:mod:`voiceivr.call.bargein`, a pure function), playback (:mod:`voiceivr.call.playback`), keypad entries
(:mod:`voiceivr.call.dtmf`), timers (:mod:`voiceivr.call.timers`).

Time inside a session is the media clock: tick ``seq`` covers ``[seq * 20 ms, (seq + 1) * 20 ms)``. Wall time is
used only to measure how long our own computations take (stage latencies, engine costs).

What the session guarantees (each has a test in tests/test_session.py):

* Barge-in: caller speech (after echo removal) or a key press during an interruptible prompt clears every
  queued agent frame at once, cancels the producer, drops the prompts queued after it, and reports the
  prompt as heard exactly up to the last frame that left (milliseconds and words).
* Uninterruptible prompts (read-backs, disclosures, code requests) play to the end; speech or keys that
  start during them are not answers to them.
* Our own echo on the caller channel does not barge in; real speech over it does.
* Secret input (a PIN, a one-time code: the brain's ``Listen(secret=True)``) leaves no digits or words on the
  timeline, and the call's recorder is told to pause (:mod:`voiceivr.call.secrecy`).
* The recogniser is fed only while the VAD hears speech; long silence puts the call to sleep (VAD only),
  then ends it politely.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from typing import Any

from voiceivr.audio.frames import FRAME_MS, Frame
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call import turns as td
from voiceivr.call.bargein import Decision, Heard, Rules, decide
from voiceivr.call.budget import Budgets, CallLatencies, EngineCosts, StageStats, account
from voiceivr.call.dtmf import DigitCollector, Entry
from voiceivr.call.echo import EchoCanceller
from voiceivr.call.handler import CallControl
from voiceivr.call.limits import IDLE_REASON, LIMIT_OF_REASON, LimitEnd
from voiceivr.call.media import InboundFrame, MediaChannel
from voiceivr.call.playback import Playback, PromptAudio
from voiceivr.call.secrecy import hides
from voiceivr.call.timers import DigitsTimedOut, FallAsleep, GoodbyeOverdue, IdleDue, LimitDue, NoInputDue, Timers
from voiceivr.settings import CallSettings
from voiceivr.speech.base import SttEngine, TtsEngine, VadEngine
from voiceivr.speech.denoise import Denoiser

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000


class CallSession:
    def __init__(
        self,
        *,
        call_id: str,
        media: MediaChannel,
        brain: b.Brain,
        vad: VadEngine,
        stt: SttEngine,
        tts: TtsEngine,
        settings: CallSettings | None = None,
        budgets: Budgets | None = None,
        control: CallControl | None = None,
        prompt_cache: Any | None = None,
        stats: StageStats | None = None,
        denoiser: Denoiser | None = None,
    ) -> None:
        self.call_id = call_id
        self.media = media
        self.brain = brain
        self.rate = media.rate
        self.s = settings or CallSettings()
        self.control = control
        self.vad = vad.stream(self.rate)
        self.audio = PromptAudio(tts, prompt_cache)
        self.echo = EchoCanceller(self.rate) if self.s.echo_suppression else None
        self.denoise = denoiser.stream(self.rate) if denoiser is not None else None  # this call's own state
        self.latency = CallLatencies(call_id, budgets or Budgets())
        if stats is not None:
            self.latency.stats = stats
        self.costs = EngineCosts()
        self.timeline: list[ev.Event] = []
        self._control: queue.SimpleQueue[ev.SystemEvent] = queue.SimpleQueue()
        self._now = 0.0
        self._seq = -1
        self.rules = Rules.of(self.s)  # barge-in (voiceivr/call/bargein.py)
        self.turns = td.TurnDetector(self.s, call_id=call_id, rate=self.rate, vad=self.vad, stt=stt, echo=self.echo,
                                  denoise=self.denoise, latency=self.latency, costs=self.costs)
        self.play = Playback(call_id=call_id, media=media, audio=self.audio, lookahead_ms=self.s.lookahead_ms,
                             latency=self.latency, costs=self.costs)
        self.keys = DigitCollector()
        self.timers = Timers(self.s)
        self.limits = self.timers.limits
        self._after_playback: list[b.BrainOutput] = []
        self._listen = b.Listen()
        self._awaiting_response_since: float | None = None  # end of the caller input we owe an answer to
        self._response_wall: float | None = None  # wall clock when the brain answered (synthesis stage)
        self.ended = False
        self.outcome = ""
        self.end_reason = ""
        self.started = False

    # ------------------------------------------------------------------------------------------ inputs

    def post(self, event: ev.SystemEvent) -> None:
        """From any thread: DTMF, hangup, media moved, dialog replaced. Handled before the next audio."""
        self._control.put(event)

    def start(self) -> None:
        self.started = True
        self._handle_outputs(self._brain_call(None))

    def process(self, frame: InboundFrame) -> None:
        """One media tick: control events first, then the caller's audio, then playback and timers."""
        if self.ended:
            return
        self._seq = frame.seq
        self._now = frame.seq * FRAME_S
        self._drain_control()
        if self.ended:
            return
        self._track_playback()
        caller = self.turns.caller_frame(frame, self._now)
        self._hear(caller)
        if self.ended:
            return
        if self.play.current is not None and self.play.current.held:
            quiet = Heard("quiet", vad_onset=self.vad.tentative_onset is not None, pending=self.turns.pending)
            if decide(self.rules, self.play.state(self._now), quiet) is Decision.RELEASE:
                self._release_hold()  # the sound that held the prompt did not become a barge-in
                self.turns.noise_floor = max(self.turns.noise_floor, self.turns.level)  # the line's noise for now
        self._timers()
        self._fill_outbox()

    def idle(self, now: float) -> None:
        """No audio arrived for a while (a stalled RTP stream): still honour control events and timers."""
        self._now = max(self._now, now)
        self._drain_control()
        if not self.ended:
            self._timers()

    # ---------------------------------------------------------------------------------- control events

    def _drain_control(self) -> None:
        while not self.ended:
            try:
                event = self._control.get_nowait()
            except queue.Empty:
                return
            self._on_control(event)

    def _on_control(self, event: ev.SystemEvent) -> None:
        if isinstance(event, ev.DtmfDigit):
            self._on_digit(event.digit, event.method)
        elif isinstance(event, ev.Hangup):
            self._emit(ev.Hangup(self._now, by=event.by, reason=event.reason))
            end = self.limits.fired
            if end is not None:  # during the goodbye of a limit: the brain already knows the call is over
                self._finish(end.outcome, end.reason, hang_up=False)
                return
            self._brain_call(b.HungUp(self._now))
            self._finish(outcome=self.brain.outcome() or "caller_hangup", reason=f"hangup by {event.by}")
        elif isinstance(event, ev.MediaMoved):
            self._emit(ev.MediaMoved(self._now, address=event.address))
            self._handle_outputs(self._brain_call(b.SessionChanged("media moved", event.address, self._now)))
        elif isinstance(event, ev.DialogReplaced):
            self._emit(ev.DialogReplaced(self._now, reason=event.reason))
            self._handle_outputs(self._brain_call(b.SessionChanged(event.reason, at=self._now)))
        else:
            raise TypeError(f"not a control event: {type(event).__name__}")

    # ------------------------------------------------------------------------------------------ speech

    def _hear(self, frame: Frame) -> None:
        for signal in self.turns.hear(frame, self._now):
            if isinstance(signal, td.Onset):
                self._speech_started(signal.onset, signal.decided_at)
            elif isinstance(signal, td.Offset):
                self._emit(self.turns.stopped(signal.t))
            elif isinstance(signal, td.Tentative):
                # a window of speech over a prompt (vad), or the caller's line went loud (energy): go quiet now,
                # decide at the VAD's start event
                decision = decide(self.rules, self.play.state(self._now), signal.heard)
                if decision in (Decision.HOLD_VAD, Decision.HOLD_ENERGY):
                    self._emit(self.play.hold(self._now, "vad" if decision is Decision.HOLD_VAD else "energy"))
            elif isinstance(signal, td.Partial) and not (signal.turn.secret or self._listen.secret):
                self._emit(ev.TranscriptPartial(self._now, text=signal.text))  # a partial is nothing but its words
            elif isinstance(signal, td.StillSpeaking):
                decision = decide(self.rules, self.play.state(self._now), signal.heard)
                if decision in (Decision.CANCEL, Decision.BARGE):
                    signal.turn.barge_pending = False
                if decision is Decision.BARGE:
                    self._barge_in(signal.turn.onset)
            elif isinstance(signal, td.TurnOver):
                self._end_turn(signal.turn, signal.reason)

    def _speech_started(self, onset: float, decided_at: float) -> None:
        if self.turns.resumed():  # speech resumed within the end-of-turn wait: same turn
            return
        playing = self.play.current.prompt if self.play.current else None
        if playing is not None and self.turns.is_echo(onset, self._now):
            self._emit(ev.EchoSuppressed(self._now, prompt_id=playing.prompt_id))
            self.turns.current = td.Turn(onset, decided_at, None, ignored=td.ECHO)
            return
        if self.limits.fired is not None:
            return  # saying goodbye: nothing the caller says now is an answer
        self.timers.caller_active(self._now)
        self.timers.no_input_deadline = None
        self._emit(ev.SpeechStarted(onset, decided_at=decided_at, during_prompt=playing.prompt_id if playing else None))
        decision = decide(self.rules, self.play.state(self._now), Heard("start", speech_ms=(self._now - onset) * 1000))
        if decision is Decision.IGNORE:
            assert playing is not None
            self.turns.current = td.Turn(onset, decided_at, None, ignored=td.UNINTERRUPTIBLE,
                                         during_prompt=playing.prompt_id)
            return
        turn, events = self.turns.begin(onset, decided_at, self._listen, playing.prompt_id if playing else None,
                                        sleeping=self.timers.sleeping, now=self._now)
        for event in events:
            self._emit(event)
        if decision is Decision.BARGE:
            self._barge_in(onset)
        elif decision in (Decision.WAIT, Decision.WAIT_AND_HOLD):
            turn.barge_pending = True
            if decision is Decision.WAIT_AND_HOLD:
                self._emit(self.play.hold(self._now, "vad"))

    def _listen_for(self, listen: b.Listen) -> None:
        self._listen = listen
        self._sync_secret()
        self.turns.expect(listen)

    def _end_turn(self, turn: td.Turn, reason: str) -> None:
        end = self.turns.end(turn, self._now, self._listen.secret)
        if end.answer is None:  # no recogniser ran: our echo, or speech over an uninterruptible prompt
            self._emit(end.final)
            if end.overheard is not None:
                self._handle_outputs(self._brain_call(end.overheard))
            return
        if turn.barge_pending:
            decision = decide(self.rules, self.play.state(self._now), Heard("end", end.speech_ms, end.text))
            if decision is Decision.BACKCHANNEL:
                self._emit(ev.Backchannel(self._now, text="" if end.secret else end.text, secret=end.secret))
                self._release_hold()
                return
            turn.barge_pending = False
            if decision is Decision.BARGE:
                self._barge_in(turn.onset)
        self._emit(end.final)
        self.timers.no_input_count = 0
        self._awaiting_response_since = end.answer.ended_at
        self._handle_outputs(self._brain_call(end.answer))
        self._sync_secret()

    # -------------------------------------------------------------------------------------------- DTMF

    def _on_digit(self, digit: str, method: str) -> None:
        masked = hides(digit) and self._secret_input()
        self.media.secret.key_handled(masked)  # the recorder strips a typed-ahead digit it wrote down in clear
        self._emit(ev.DtmfDigit(self._now, digit="" if masked else digit, method=method, secret=masked))
        swallowed = self.keys.swallows(digit, self._now)  # always asked: any other key ends the grace
        ignored = "terminator after a full entry" if swallowed else "call ending" if self.limits.fired else ""
        if ignored:
            self._emit(ev.DtmfIgnored(self._now, reason=ignored))
            return
        self.timers.caller_active(self._now)
        playing = self.play.current.prompt if self.play.current else None
        decision = decide(self.rules, self.play.state(self._now), Heard("dtmf"))
        if decision is Decision.IGNORE:
            assert playing is not None
            self._emit(ev.DtmfIgnored(self._now, reason="during uninterruptible prompt"))
            self._handle_outputs(self._brain_call(b.Overheard(playing.prompt_id, "dtmf", self._now, self._now)))
            return
        if decision is Decision.BARGE:
            self._barge_in(self._now)
        self.timers.no_input_deadline = None
        entry = self.keys.key(digit, self._listen.dtmf, self._now, self._listen.secret)
        if entry is not None:
            self._digits_done(entry)

    def _digits_done(self, entry: Entry) -> None:
        self._emit(ev.DigitsCollected(self._now, digits="" if entry.secret else entry.digits, reason=entry.reason,
                                      secret=entry.secret))
        self.timers.no_input_count = 0
        self._awaiting_response_since = self._now
        self._handle_outputs(self._brain_call(b.Digits(entry.digits, entry.reason, entry.started_at, self._now)))
        self._sync_secret()

    def _secret_input(self) -> bool:
        """Is the caller giving a secret: asked for one, or in the middle of an entry or turn begun as one?"""
        return self._listen.secret or self.keys.secret or (self.turns.current is not None and self.turns.current.secret)

    def _sync_secret(self) -> None:
        self.media.secret.active = self._secret_input()

    # ------------------------------------------------------------------------------------------ timers

    def _timers(self) -> None:
        now = self._now
        busy = self.play.current is not None or self.turns.current is not None or bool(self.keys.digits)
        due = self.timers.check(now, busy=busy, digits_timed_out=self.keys.timed_out(self._listen.dtmf, now))
        if isinstance(due, LimitDue):
            self._end_by_limit(due.end)
        elif isinstance(due, GoodbyeOverdue):
            self._finish(due.end.outcome, due.end.reason)
        elif isinstance(due, DigitsTimedOut):
            self._digits_done(self.keys.done(self.keys.digits, "timeout", now, self._listen.secret))
        elif isinstance(due, IdleDue):
            self._emit(ev.IdleHangup(now, idle_s=round(due.idle_s, 1)))
            self._queue_prompt(ev.Reply(now, self.play.new_prompt_id(), self.s.idle_goodbye, "idle", cacheable=True))
            self._after_playback.append(b.EndCall(IDLE_REASON, outcome="abandoned"))
        elif isinstance(due, FallAsleep):
            self._emit(ev.Sleeping(now))
        elif isinstance(due, NoInputDue):
            self._emit(ev.NoInput(now, count=due.count))
            self._handle_outputs(self._brain_call(b.NoInputTimeout(due.count, now)))

    def _end_by_limit(self, end: LimitEnd) -> None:
        """A limit ran out (voiceivr/call/limits.py): stop listening and talking, void what the brain had
        pending, and say an uninterruptible goodbye, after which the call hangs up."""
        self._emit(ev.LimitReached(self._now, kind=f"limit.{end.kind}", after_s=round(self._now, 1),
                                   since_progress_s=round(self._now - self.limits.last_progress, 1)))
        self.turns.cancel()
        self.keys.clear()
        self.timers.no_input_deadline = None
        for event in self.play.stop_all(self._now):
            self._emit(event)
        self._after_playback = [b.EndCall(end.reason, outcome=end.outcome)]
        self._brain_call(b.HungUp(self._now))  # pending requests are void; what it answers is not said
        self._queue_prompt(ev.Disclosure(self._now, self.play.new_prompt_id(), end.goodbye, "limit", cacheable=True))

    # ---------------------------------------------------------------------------------------- playback

    def _queue_prompt(self, prompt: ev.Prompt) -> None:
        self.play.queued.append(prompt)
        if self.play.current is None:
            self._start_next_prompt()

    def _start_next_prompt(self) -> None:
        while self.play.current is None and self.play.queued:
            started = self.play.begin_next(self._now, self._response_wall)
            assert started is not None
            self._emit(started)
            self._fill_outbox()
        if not self.play.busy:
            self._playback_idle()

    def _fill_outbox(self) -> None:
        if self.play.fill():
            self._response_wall = None

    def _track_playback(self) -> None:
        first_audio_t, done = self.play.track(self._seq)
        if first_audio_t is not None and self._awaiting_response_since is not None:
            self.latency.record("e2e", max(0.0, first_audio_t - self._awaiting_response_since) * 1000)
            self._awaiting_response_since = None
        if done:
            self._prompt_done(cut=False)

    def _prompt_done(self, cut: bool, played_samples: int = 0) -> None:
        if not cut:
            pb, played = self.play.finished(self._now)
            self._emit(played)
            self._handle_outputs(self._brain_call(b.PromptFinished(pb.prompt.prompt_id, self._now)))
        else:
            pb, cut_event = self.play.cut(self._now, played_samples)
            self._emit(cut_event)
            self._handle_outputs(self._brain_call(
                b.PromptFinished(pb.prompt.prompt_id, self._now, cut=True, words_heard=cut_event.words_heard,
                                 heard_text=cut_event.heard_text)
            ))
        if self.play.current is None:
            self._start_next_prompt()

    def _playback_idle(self) -> None:
        """Everything queued has played: carry out what waited for it, then start listening."""
        pending, self._after_playback = self._after_playback, []
        for out in pending:
            if isinstance(out, b.EndCall):
                self._finish(out.outcome, out.reason, hang_up=True)
                return
            if isinstance(out, b.TransferCall):
                self._emit(ev.Transfer(self._now, target=out.target))
                if self.control is not None:
                    self.control.transfer(out.target)
                self._finish("transferred", f"transfer to {out.target}", hang_up=False)
                return
        if self.turns.current is None and not self.keys.digits and not self.timers.sleeping:
            self.timers.listen_from(self._now, self._listen.no_input_timeout_s)

    def _release_hold(self) -> None:
        resumed = self.play.resume(self._now)
        if resumed is not None:
            self._emit(resumed)
            self._fill_outbox()

    def _barge_in(self, onset: float) -> None:
        pb = self.play.current
        if pb is None or not pb.prompt.interruptible:
            return
        dropped, played = self.play.stop()
        self._emit(ev.BargeIn(self._now, prompt_id=pb.prompt.prompt_id, onset=onset, dropped_frames=dropped))
        flushed = self.play.drop_queued(self._now)
        self._after_playback = [o for o in self._after_playback if not isinstance(o, b.EndCall | b.TransferCall)]
        self._prompt_done(cut=True, played_samples=played)
        for prompt, note in flushed:  # never started: heard with 0 words
            self._emit(note)
            self._handle_outputs(self._brain_call(b.PromptFinished(prompt.prompt_id, self._now, cut=True)))

    # --------------------------------------------------------------------------------------- the brain

    def _brain_call(self, event: b.BrainInput | None) -> list[b.BrainOutput]:
        try:
            return self.brain.start() if event is None else self.brain.handle(event)
        except Exception:  # one call's bug must not take the worker down silently: end this call cleanly
            log.exception("conversation logic failed; ending the call", extra={"call_id": self.call_id})
            sorry = "Sorry, something went wrong on our side. Please call again later."
            return [ev.Reply(self._now, prompt_id=0, text=sorry), b.EndCall("internal error", outcome="error")]

    def _handle_outputs(self, outputs: list[b.BrainOutput]) -> None:
        if any(isinstance(out, b.Listen) and out.secret for out in outputs):
            # Before the prompt asking for it starts synthesising: a caller who keys ahead is already inside.
            self.media.secret.active = True
        said = False
        for out in outputs:
            if isinstance(out, ev.Prompt):
                prompt = out
                if prompt.prompt_id <= 0:
                    prompt = dataclasses.replace(prompt, prompt_id=self.play.new_prompt_id(), t=self._now)
                if not said:
                    self._response_wall = time.perf_counter()
                said = True
                self.limits.said(prompt.text, self._now)
                self._queue_prompt(prompt)
            elif isinstance(out, b.Listen):
                # Applies at once (a caller who barges in answers this question); the no-input timer
                # starts only when the prompts have played.
                self._listen_for(out)
            elif isinstance(out, b.TransferCall | b.EndCall):
                self._after_playback.append(out)
                if not self.play.busy:
                    self._playback_idle()
            elif isinstance(out, b.Trace):
                self._trace(out)
        quiet = not self.play.busy and self.turns.current is None
        if not said and quiet and not self.ended and not self.keys.digits and not self.timers.sleeping:
            self.timers.listen_from(self._now, self._listen.no_input_timeout_s)

    def _trace(self, out: b.Trace) -> None:
        if out.kind == "intent":
            d = out.detail
            self._emit(ev.IntentRecognized(self._now, intent=str(d.get("intent", "")), tier=d.get("tier"),
                                           confidence=float(d.get("confidence", 0.0)), node=str(d.get("node", ""))))
        elif out.detail:
            self._emit(ev.traced(self._now, out.kind, dict(out.detail)))
        account(self.latency, self.costs, out.stage_seconds)

    # -------------------------------------------------------------------------------------------- end

    def _finish(self, outcome: str, reason: str, hang_up: bool = True) -> None:
        if self.ended:
            return
        self.turns.cancel()
        self.play.cancel()
        if self.denoise is not None:
            self.denoise.close()
        self.ended = True
        self.outcome = outcome
        self.end_reason = reason
        self._emit(ev.CallEnded(self._now, outcome=outcome, reason=reason))
        if hang_up and self.control is not None:
            self.control.hangup(reason)

    def _emit(self, event: ev.Event | None) -> None:
        if event is not None:
            self.timeline.append(event)

    # ---------------------------------------------------------------------------------------- reports

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "ended_by_limit": LIMIT_OF_REASON.get(self.end_reason, ""),
            "resolved_tasks": self.brain.resolved_tasks(),
            "latency": self.latency.table(),
            "latency_samples": {k: [round(x, 2) for x in v] for k, v in self.latency.samples.items()},
            "budget_breaches": [{"stage": s, "ms": round(ms, 1)} for s, ms in self.latency.breaches],
            "engine_seconds": self.costs.as_dict(),
        }
