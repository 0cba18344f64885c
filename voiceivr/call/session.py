"""One call's brain-side worker: turn taking, barge-in, playback, budgets and costs.

The session knows nothing of SIP. It is driven one 20 ms tick at a time by :meth:`CallSession.process`,
with the caller frame of that tick (which also carries the agent frame sent in the same tick), and it
queues its own audio into the call's :class:`~voiceivr.call.media.MediaChannel`. Control events (DTMF,
hangup, media moved) arrive through :meth:`CallSession.post` from any thread and are handled before the
next caller audio. :class:`CallWorker` runs a session on its own thread for a live call;
``voiceivr.replay`` drives the very same object from a recorded call, frame by frame, on a virtual clock.

Time inside a session is the media clock: tick ``seq`` covers ``[seq * 20 ms, (seq + 1) * 20 ms)``. Wall
time is used only to measure how long our own computations take (stage latencies, engine costs).

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
import hashlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Frame, Pcm, samples_per_frame
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.budget import Budgets, CallLatencies, EngineCosts, StageStats
from voiceivr.call.echo import EchoCanceller
from voiceivr.call.handler import CallControl
from voiceivr.call.levelgate import LevelGate, level_dbfs
from voiceivr.call.limits import IDLE_REASON, LIMIT_OF_REASON, CallLimits, LimitEnd
from voiceivr.call.media import InboundFrame, MediaChannel, PlayedMark
from voiceivr.call.secrecy import hides
from voiceivr.errors import VoiceivrError
from voiceivr.settings import CallSettings
from voiceivr.speech.base import SttEngine, SttResult, SttStream, TtsChunk, TtsEngine, VadEngine, WordMark
from voiceivr.speech.denoise import Denoiser

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000


class PromptAudio:
    """Where a prompt's audio comes from: a cache that may already hold it, else the TTS engine."""

    def __init__(self, tts: TtsEngine, cache: Any | None = None) -> None:
        self.tts = tts
        self.cache = cache  # voiceivr.speech prompt cache: get(text, voice, rate) / put(text, voice, rate, utt)

    def chunks(self, prompt: ev.Prompt, rate: int) -> tuple[Iterator[TtsChunk], Any | None]:
        """(chunks, stream-to-cancel or None)."""
        if prompt.cacheable and self.cache is not None:
            cached = self.cache.get(prompt.text, self.tts.voice, rate)
            if cached is not None:
                return iter([TtsChunk(cached.pcm, cached.rate, tuple(cached.words), final=True)]), None
        stream = self.tts.stream(prompt.text, rate)
        return iter(stream), stream


@dataclass
class _Playback:
    prompt: ev.Prompt
    chunks: Iterator[TtsChunk]
    stream: Any | None  # the TTS stream to cancel on barge-in
    queued_at_wall: float
    pending: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    produced: int = 0  # samples queued so far
    exhausted: bool = False
    words: list[WordMark] = field(default_factory=list)
    first_sent_seq: int | None = None
    synthesis_recorded: bool = False
    all_pcm: list[Pcm] = field(default_factory=list)  # what was queued, for caching static prompts
    held: bool = False  # caller speech started over it: nothing more goes out until barge-in or release
    held_at: float = 0.0


@dataclass
class _Turn:
    """One stretch of caller speech, from VAD onset to end of turn."""

    onset: float
    decided_at: float
    stt: SttStream | None
    ignored: str = ""  # why it cannot be an answer
    during_prompt: int | None = None
    last_speech_end: float | None = None
    speaking: bool = True
    partial: str = ""
    audio: hashlib._Hash = field(default_factory=hashlib.sha256)
    barge_pending: bool = False
    fed_until: float = float("-inf")  # end of the last frame given to the recogniser
    quiet_since: float | None = None  # start of the current run of quiet caller frames (energy end of turn)
    peak_level: float = -96.0  # loudest caller frame of the turn, dBFS
    gate_quiet_since: float | None = None  # end of the turn's last frame the level gate called loud
    secret: bool = False  # began while the brain listened for a secret: its words are kept nowhere


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
        self.stt_engine = stt
        self.audio = PromptAudio(tts, prompt_cache)
        self.echo = EchoCanceller(self.rate) if self.s.echo_suppression else None
        self.denoise = denoiser.stream(self.rate) if denoiser is not None else None  # this call's own state
        self.latency = CallLatencies(call_id, budgets or Budgets())
        if stats is not None:
            self.latency.stats = stats
        self.costs = EngineCosts()
        self.timeline: list[ev.Event] = []
        self._control: queue.SimpleQueue[ev.SystemEvent] = queue.SimpleQueue()
        self._frame_samples = samples_per_frame(self.rate)
        self._now = 0.0
        self._seq = -1
        self._own_prompt_id = 0
        self._playing: _Playback | None = None
        self._queued_prompts: deque[ev.Prompt] = deque()
        self._after_playback: list[b.BrainOutput] = []
        self._listen = b.Listen()
        self._whole_phrases: frozenset[str] = frozenset()  # the grammar's phrases, normalised (_complete_phrase)
        self._preroll: deque[Frame] = deque(maxlen=max(1, self.s.preroll_ms // FRAME_MS))
        self._dominant: deque[bool] = deque(maxlen=100)
        self._turn: _Turn | None = None
        self._digits = ""
        self._digits_started: float | None = None
        self._digits_secret = False  # the entry in progress began during secret input
        self._last_digit_at = 0.0
        self._swallow_terminator_until = -1.0
        self._swallow_terminator = ""
        self._no_input_deadline: float | None = None
        self._no_input_count = 0
        self._last_activity = 0.0
        self._sleeping = False
        self._awaiting_response_since: float | None = None  # end of the caller input we owe an answer to
        self._response_wall: float | None = None  # wall clock when the brain answered (synthesis stage)
        self._noise_floor = -60.0  # dBFS of the caller channel between words
        self._level = -96.0
        self._loud_onset = False
        if self.s.barge_in_hold not in ("energy", "vad", "off"):
            raise ValueError(f"call.barge_in_hold must be energy, vad or off, not {self.s.barge_in_hold!r}")
        self._hold_confirm_s = self.s.barge_in_hold_confirm_ms / 1000 if self.s.barge_in_hold == "energy" else 0.0
        self._gate = LevelGate(self.s.level_gate_open_db) if self.s.level_gate else None
        self._vad_unconfirmed = False  # the VAD hears speech that the level gate did not take for the caller's
        self._track_levels = self.s.barge_in_hold == "energy" or self.s.energy_end_of_turn
        self.limits = CallLimits(self.s)
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
        mic = np.frombuffer(frame.pcm, dtype="<i2").astype(np.int16)
        sent = None if frame.sent is None else np.frombuffer(frame.sent, dtype="<i2").astype(np.int16)
        if self.echo is not None:
            clean = self.echo.process(mic, sent)
            self._dominant.append(self.echo.speech_dominant())
        else:
            clean = mic
            self._dominant.append(True)
        if self._gate is not None:
            # before the suppressor: it turns steady babble into bursts over a lower floor, which the gate's
            # percentile background would take for the caller (measured in docs/speech.md)
            self._gate.feed(level_dbfs(clean))
        if self.denoise is not None:  # after the echo canceller, which needs the line as it was
            before = self.denoise.engine_seconds
            clean = self.denoise.process(clean)
            self.costs.add("denoise", self.denoise.engine_seconds - before)
        if self._track_levels:
            self._track_level(clean)
        caller = Frame(clean, self.rate, self._now)
        self._hear(caller)
        if self.ended:
            return
        pb = self._playing
        if (pb is not None and pb.held and self.vad.tentative_onset is None
                and (self._turn is None or not self._turn.barge_pending)
                and self._now - pb.held_at >= self._hold_confirm_s):
            self._release_hold()  # the sound that held the prompt did not become a barge-in
            self._noise_floor = max(self._noise_floor, self._level)  # and it is the line's noise for now
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
        vad_before = self.vad.engine_seconds
        events = self.vad.feed(frame)
        self.costs.add("vad", self.vad.engine_seconds - vad_before)
        self._preroll.append(frame)
        for e in events:
            if e.kind == "start":
                if self._gate is not None and self._turn is None and not self._gate.loud:
                    self._vad_unconfirmed = True  # other voices on the line: wait for the caller's level
                    continue
                self._speech_started(e.t, e.decided_at)
            else:
                self._vad_unconfirmed = False
                self._speech_stopped(e.t)
        if self._vad_unconfirmed and self._turn is None and self._gate is not None and self._gate.loud:
            self._vad_unconfirmed = False
            # the level rose over the background while the VAD heard speech: the caller began about a short
            # window (100 ms) ago
            self._speech_started(max(self._now + FRAME_S - 0.1, 0.0), self._now + FRAME_S)
        if self._turn is None and self.s.barge_in and self._playing is not None and self.s.barge_in_hold != "off":
            tentative = self.vad.tentative_onset
            if tentative is not None and not self._is_echo(tentative):
                self._hold("vad")  # one window of speech over a prompt: go quiet now, decide at the start event
            elif self.s.barge_in_hold == "energy" and self._loud_onset and self._dominant and self._dominant[-1]:
                self._hold("energy")  # the caller's line went loud: go quiet, let the VAD confirm
        turn = self._turn
        if turn is None:
            return
        if turn.ignored == "echo of our prompt":
            # Our echo may hide the caller starting to talk over it: once the residual has been the
            # caller's for a while, this is speech after all.
            k = max(1, self.s.barge_in_min_speech_ms // FRAME_MS)
            recent = list(self._dominant)[-k:]
            if turn.speaking and len(recent) == k and all(recent):
                self._turn = None
                self._speech_started(self._now + FRAME_S - k * FRAME_S, self._now)
            return
        if turn.speaking and turn.stt is not None:
            self._feed_stt(turn, frame)
        if turn.barge_pending:
            self._maybe_barge_in_late(turn)
        if turn.speaking and self._now - turn.onset >= self.s.max_utterance_s:
            self._end_turn(turn, reason="max_utterance")
            return
        if turn.speaking and self._gate_says_ended(turn):
            assert turn.gate_quiet_since is not None
            self._speech_stopped(turn.gate_quiet_since)
            self._vad_unconfirmed = self.vad.speaking  # what the VAD goes on hearing is the background
        if turn.speaking and self.s.energy_end_of_turn and turn.stt is not None and self._quiet_long_enough(turn):
            # The words so far are a whole expected phrase and the line has gone quiet: the VAD would say so
            # about 200 ms later. Its end event for this speech is dropped with a fresh VAD state, so that
            # speech after this turn starts a turn of its own.
            assert turn.quiet_since is not None
            self._speech_stopped(turn.quiet_since)
            self.vad.reset()
            self._end_turn(turn, reason="silence")
            return
        if not turn.speaking and turn.last_speech_end is not None:
            wait_ms = self.s.end_of_turn_ms
            if self._complete_phrase(turn.partial):
                wait_ms = self.s.fast_end_of_turn_ms
            if (self._now + FRAME_S - turn.last_speech_end) * 1000 >= wait_ms:
                self._end_turn(turn, reason="silence")

    def _speech_started(self, onset: float, decided_at: float) -> None:
        turn = self._turn
        if turn is not None:  # speech resumed within the end-of-turn wait: same turn
            turn.speaking = True
            turn.last_speech_end = None
            return
        playing = self._playing.prompt if self._playing else None
        if playing is not None and self._is_echo(onset):
            self._emit(ev.EchoSuppressed(self._now, prompt_id=playing.prompt_id))
            self._turn = _Turn(onset, decided_at, None, ignored="echo of our prompt")
            return
        if self.limits.fired is not None:
            return  # saying goodbye: nothing the caller says now is an answer
        self._last_activity = self._now
        self._no_input_deadline = None
        if self._sleeping:
            self._sleeping = False
        self._emit(ev.SpeechStarted(onset, decided_at=decided_at,
                                    during_prompt=playing.prompt_id if playing else None))
        if playing is not None and not playing.interruptible:
            self._turn = _Turn(onset, decided_at, None, ignored="during uninterruptible prompt",
                               during_prompt=playing.prompt_id)
            return
        stt = self._open_stt()
        turn = _Turn(onset, decided_at, stt, during_prompt=playing.prompt_id if playing else None,
                     secret=self._listen.secret)
        self._turn = turn
        for f in self._preroll:
            if f.end > onset - self.s.preroll_ms / 1000:
                self._feed_stt(turn, f)
        if playing is not None and self.s.barge_in:
            if self.s.backchannel != "ignore" and (self._now - onset) * 1000 >= self.s.barge_in_min_speech_ms:
                self._barge_in(onset)
            else:
                turn.barge_pending = True
                if self.s.barge_in_hold != "off":
                    self._hold()

    def _speech_stopped(self, t: float) -> None:
        turn = self._turn
        if turn is None:
            return
        self._emit(ev.SpeechStopped(t))
        turn.speaking = False
        turn.last_speech_end = t
        if turn.ignored == "echo of our prompt":
            self._turn = None

    def _is_echo(self, onset: float) -> bool:
        frames = max(1, round((self._now - onset) / FRAME_S) + 1)
        recent = list(self._dominant)[-frames:]
        return sum(recent) < 0.5 * len(recent)

    def _maybe_barge_in_late(self, turn: _Turn) -> None:
        if self._playing is None or not self._playing.prompt.interruptible:
            turn.barge_pending = False
            return
        speech_until = self._now + FRAME_S if turn.speaking else (turn.last_speech_end or self._now)
        long_enough = (speech_until - turn.onset) * 1000 >= (
            self.s.backchannel_max_ms if self.s.backchannel == "ignore" else self.s.barge_in_min_speech_ms
        )
        words = turn.partial.strip().lower()
        substantive = bool(words) and self.s.backchannel == "ignore" and not self._is_backchannel(words)
        if long_enough or substantive:
            turn.barge_pending = False
            self._barge_in(turn.onset)

    def _is_backchannel(self, text: str) -> bool:
        norm = " ".join(text.lower().replace("-", " ").split())
        return norm in {" ".join(w.lower().replace("-", " ").split()) for w in self.s.backchannel_words}

    def _open_stt(self) -> SttStream | None:
        if self._sleeping:
            return None
        grammar = self._listen.grammar
        try:
            return self.stt_engine.stream(self.rate, list(grammar) if grammar else None, repeat=self._listen.repeat,
                                          sequence=tuple(self._listen.sequence), builtin=self._listen.builtin)
        except VoiceivrError as exc:
            # A grammar the recogniser cannot take (a word with no pronunciation) is a dialplan bug that the
            # caller must not pay for: listen with free speech instead, and say so loudly.
            log.error("grammar rejected; using free speech for this turn",
                      extra={"call_id": self.call_id, "node": self._listen.node, "error": str(exc)})
            self._emit(ev.Note(self._now, kind="stt.grammar_error", detail={"node": self._listen.node,
                                                                             "error": str(exc)}))
            return self.stt_engine.stream(self.rate, None)

    def _feed_stt(self, turn: _Turn, frame: Frame) -> None:
        assert turn.stt is not None
        # The pre-roll holds the frame that set the turn off, which the frame loop then feeds again: a
        # repeated 20 ms mid-word turned "check my balance" into "get me a" (6 of 8 calls).
        if frame.end <= turn.fed_until + 1e-6:
            return
        turn.fed_until = frame.end
        turn.audio.update(frame.pcm.tobytes())
        before = turn.stt.engine_seconds
        result = turn.stt.feed(frame)
        self.costs.add(f"stt.{self.stt_engine.name}", turn.stt.engine_seconds - before)
        if result is not None and result.text and result.text != turn.partial:
            turn.partial = result.text
            if not (turn.secret or self._listen.secret):  # a partial is nothing but its words
                self._emit(ev.TranscriptPartial(self._now, text=result.text))

    def _quiet_long_enough(self, turn: _Turn) -> bool:
        """Has the caller's level been near the noise floor for fast_end_of_turn_ms after a complete phrase?

        Quiet is near the line's noise floor or far under the turn's loudest frame: the floor estimate lags a
        line whose noise just rose (it climbs 3 dB a second), the drop from the peak does not."""
        turn.peak_level = max(turn.peak_level, self._level)
        quiet = self._level < max(self._noise_floor + self.s.end_of_turn_quiet_db,
                                  turn.peak_level - self.s.end_of_turn_drop_db)
        if not quiet:
            turn.quiet_since = None
            return False
        if turn.quiet_since is None:
            turn.quiet_since = self._now
        waited_ms = (self._now + FRAME_S - turn.quiet_since) * 1000
        return waited_ms >= self.s.fast_end_of_turn_ms and self._complete_phrase(turn.partial)

    def _gate_says_ended(self, turn: _Turn) -> bool:
        """Has the caller not been loud over the line's background for level_gate_end_ms, whatever the VAD says?"""
        if self._gate is None or self._gate.loud:
            turn.gate_quiet_since = None
            return False
        if turn.gate_quiet_since is None:
            turn.gate_quiet_since = self._now
        return (self._now + FRAME_S - turn.gate_quiet_since) * 1000 >= self.s.level_gate_end_ms

    def _listen_for(self, listen: b.Listen) -> None:
        self._listen = listen
        self._sync_secret()
        whole = listen.grammar and not listen.repeat and not listen.builtin  # runs go on after pauses
        self._whole_phrases = frozenset(" ".join(p.lower().split()) for p in listen.grammar or ()) if whole \
            else frozenset()

    def _complete_phrase(self, partial: str) -> bool:
        """Is the partial transcript a whole phrase of the grammar? Asked on every quiet frame after speech."""
        return bool(partial) and " ".join(partial.lower().split()) in self._whole_phrases

    def _end_turn(self, turn: _Turn, reason: str) -> None:
        self._turn = None
        speech_end = turn.last_speech_end if turn.last_speech_end is not None else self._now
        if turn.stt is None:
            if turn.ignored and turn.ignored != "echo of our prompt":
                self._emit(ev.TranscriptFinal(self._now, text="", speech_start=turn.onset,
                                              speech_end=speech_end, ignored=turn.ignored))
            if turn.during_prompt is not None and turn.ignored == "during uninterruptible prompt":
                self._handle_outputs(self._brain_call(
                    b.Overheard(turn.during_prompt, "speech", turn.onset, speech_end)))
            return
        wall = time.perf_counter()
        before = turn.stt.engine_seconds
        result: SttResult = turn.stt.finish()
        decode_ms = (time.perf_counter() - wall) * 1000
        self.costs.add(f"stt.{self.stt_engine.name}", turn.stt.engine_seconds - before)
        self.latency.record("capture", (self._now + FRAME_S - speech_end) * 1000 + decode_ms)
        text = result.text.strip()
        secret = turn.secret or self._listen.secret
        if turn.barge_pending and self.s.backchannel == "ignore" and self._is_backchannel(text):
            self._emit(ev.Backchannel(self._now, text="" if secret else text, secret=secret))
            self._release_hold()
            return
        if turn.barge_pending:
            turn.barge_pending = False
            if self._playing is not None and self._playing.prompt.interruptible:
                self._barge_in(turn.onset)
        final = ev.TranscriptFinal(self._now, text="" if secret else text, confidence=result.confidence,
                                   speech_start=turn.onset, speech_end=speech_end, secret=secret)
        self._emit(final)
        self._no_input_count = 0
        self._awaiting_response_since = speech_end
        utterance = b.Utterance(text, result.confidence, turn.onset, speech_end, turn.audio.hexdigest())
        self._handle_outputs(self._brain_call(utterance))
        self._sync_secret()

    # -------------------------------------------------------------------------------------------- DTMF

    def _on_digit(self, digit: str, method: str) -> None:
        masked = hides(digit) and self._secret_input()
        self.media.secret.key_handled(masked)  # the recorder strips a typed-ahead digit it wrote down in clear
        self._emit(ev.DtmfDigit(self._now, digit="" if masked else digit, method=method, secret=masked))
        if digit == self._swallow_terminator and self._now <= self._swallow_terminator_until and not self._digits:
            # The caller pressed # after an entry that was already complete (max length): that is how people
            # finish keying, not a new input, and it must not cut the prompt that answers the entry.
            self._swallow_terminator_until = -1.0
            self._emit(ev.Note(self._now, kind="dtmf.ignored", detail={"reason": "terminator after a full entry"}))
            return
        self._swallow_terminator_until = -1.0  # any other key ends the entry's grace period
        if self.limits.fired is not None:
            self._emit(ev.Note(self._now, kind="dtmf.ignored", detail={"reason": "call ending"}))
            return
        self._last_activity = self._now
        self._sleeping = False
        playing = self._playing.prompt if self._playing else None
        if playing is not None and not playing.interruptible:
            self._emit(ev.Note(self._now, kind="dtmf.ignored", detail={"reason": "during uninterruptible prompt"}))
            self._handle_outputs(self._brain_call(b.Overheard(playing.prompt_id, "dtmf", self._now, self._now)))
            return
        if playing is not None and self.s.barge_in:
            self._barge_in(self._now)
        self._no_input_deadline = None
        spec = self._listen.digits
        if spec.max_digits <= 0:
            self._digits_done(digit, "single")
            return
        if digit == spec.terminator:
            self._digits_done(self._digits, "terminator")
            return
        if not self._digits:
            self._digits_started = self._now
            self._digits_secret = self._listen.secret
        self._digits += digit
        self._last_digit_at = self._now
        if len(self._digits) >= spec.max_digits:
            if spec.terminator:
                self._swallow_terminator = spec.terminator
                self._swallow_terminator_until = self._now + spec.inter_digit_timeout_s
            self._digits_done(self._digits, "max_length")

    def _digits_done(self, digits: str, reason: str) -> None:
        started = self._digits_started if self._digits_started is not None else self._now
        secret = self._digits_secret or self._listen.secret
        self._digits = ""
        self._digits_started = None
        self._digits_secret = False
        self._emit(ev.DigitsCollected(self._now, digits="" if secret else digits, reason=reason, secret=secret))
        self._no_input_count = 0
        self._awaiting_response_since = self._now
        self._handle_outputs(self._brain_call(b.Digits(digits, reason, started, self._now)))
        self._sync_secret()

    def _secret_input(self) -> bool:
        """Is the caller giving a secret: asked for one, or in the middle of an entry or turn begun as one?"""
        return self._listen.secret or self._digits_secret or (self._turn is not None and self._turn.secret)

    def _sync_secret(self) -> None:
        self.media.secret.active = self._secret_input()

    # ------------------------------------------------------------------------------------------ timers

    def _timers(self) -> None:
        now = self._now
        end = self.limits.due(now)
        if end is not None:
            self._end_by_limit(end)
            return
        if self.limits.fired is not None:
            if self.limits.overdue(now):
                self._finish(self.limits.fired.outcome, self.limits.fired.reason)
            return
        spec = self._listen.digits
        if self._digits and now - self._last_digit_at >= spec.inter_digit_timeout_s:
            self._digits_done(self._digits, "timeout")
            return
        idle = now - self._last_activity
        busy = self._playing is not None or self._turn is not None or bool(self._digits)
        if not busy and idle >= self.s.idle_hangup_s:
            self._emit(ev.Note(now, kind="idle.hangup", detail={"idle_s": round(idle, 1)}))
            self._last_activity = now  # say goodbye once
            self._queue_prompt(ev.Reply(now, prompt_id=self._new_prompt_id(), text=self.s.idle_goodbye,
                                        node="idle", cacheable=True))
            self._after_playback.append(b.EndCall(IDLE_REASON, outcome="abandoned"))
            return
        if not busy and not self._sleeping and idle >= self.s.idle_sleep_s:
            self._sleeping = True
            self._no_input_deadline = None
            self._emit(ev.Sleeping(now))
            return
        if (
            self._no_input_deadline is not None
            and not busy
            and not self._sleeping
            and now >= self._no_input_deadline
        ):
            self._no_input_deadline = None
            self._no_input_count += 1
            self._emit(ev.NoInput(now, count=self._no_input_count))
            self._handle_outputs(self._brain_call(b.NoInputTimeout(self._no_input_count, now)))

    def _end_by_limit(self, end: LimitEnd) -> None:
        """A limit ran out (voiceivr/call/limits.py): stop listening and talking, void what the brain had
        pending, and say an uninterruptible goodbye, after which the call hangs up."""
        self._emit(ev.Note(self._now, kind=f"limit.{end.kind}",
                           detail={"after_s": round(self._now, 1),
                                   "since_progress_s": round(self._now - self.limits.last_progress, 1)}))
        if self._turn is not None and self._turn.stt is not None:
            self._turn.stt.cancel()
        self._turn = None
        self._digits = ""
        self._no_input_deadline = None
        pb = self._playing
        if pb is not None:
            if pb.stream is not None:
                pb.stream.cancel()
            self.media.clear()
            mark, _ = self.media.played_position()
            played = mark.end_sample if mark is not None and mark.prompt_id == pb.prompt.prompt_id else 0
            heard = [w for w in pb.words if w.end_sample <= played]
            self._emit(ev.PromptCut(self._now, prompt_id=pb.prompt.prompt_id, played_ms=int(played * 1000 / self.rate),
                                    total_ms=int(pb.produced * 1000 / self.rate), words_heard=len(heard),
                                    words_total=len(pb.words), heard_text=" ".join(w.word for w in heard)))
            self._playing = None
        for p in self._queued_prompts:
            self._emit(ev.Note(self._now, kind="prompt.dropped", detail={"prompt_id": p.prompt_id}))
        self._queued_prompts.clear()
        self._after_playback = [b.EndCall(end.reason, outcome=end.outcome)]
        self._brain_call(b.HungUp(self._now))  # pending requests are void; what it answers is not said
        self._queue_prompt(ev.Disclosure(self._now, prompt_id=self._new_prompt_id(), text=end.goodbye, node="limit",
                                         cacheable=True))

    # ---------------------------------------------------------------------------------------- playback

    def _new_prompt_id(self) -> int:
        """Ids for the session's own prompts are negative; the brain numbers its prompts from 1."""
        self._own_prompt_id -= 1
        return self._own_prompt_id

    def _queue_prompt(self, prompt: ev.Prompt) -> None:
        self._queued_prompts.append(prompt)
        if self._playing is None:
            self._start_next_prompt()

    def _start_next_prompt(self) -> None:
        while self._playing is None and self._queued_prompts:
            prompt = self._queued_prompts.popleft()
            wall = time.perf_counter()
            chunks, stream = self.audio.chunks(prompt, self.rate)
            self._playing = _Playback(prompt, chunks, stream, queued_at_wall=self._response_wall or wall)
            self._emit(ev.PromptStarted(self._now, prompt_id=prompt.prompt_id, kind=type(prompt).__name__,
                                        text=prompt.text))
            self._fill_outbox()
        if self._playing is None and not self._queued_prompts:
            self._playback_idle()

    def _fill_outbox(self) -> None:
        pb = self._playing
        if pb is None or pb.held:
            return
        lookahead = max(1, self.s.lookahead_ms // FRAME_MS)
        n = self._frame_samples
        tts_before = pb.stream.engine_seconds if pb.stream is not None else 0.0
        while self.media.queued_frames() < lookahead and not (pb.exhausted and len(pb.pending) == 0):
            if len(pb.pending) < n and not pb.exhausted:
                try:
                    chunk = next(pb.chunks)
                except StopIteration:
                    pb.exhausted = True
                    continue
                if chunk.rate != self.rate:
                    raise ValueError(f"TTS gave {chunk.rate} Hz audio for a {self.rate} Hz call")
                pb.words.extend(chunk.words)
                pb.pending = np.concatenate([pb.pending, chunk.pcm.astype(np.int16, copy=False)])
                continue
            piece = pb.pending[:n]
            pb.pending = pb.pending[n:]
            if len(piece) < n:
                piece = np.concatenate([piece, np.zeros(n - len(piece), dtype=np.int16)])
            pb.produced += n
            pb.all_pcm.append(piece)
            last = pb.exhausted and len(pb.pending) == 0
            self.media.play(piece.astype("<i2").tobytes(),
                            PlayedMark(pb.prompt.prompt_id, pb.produced, last_of_prompt=last))
            if not pb.synthesis_recorded:
                pb.synthesis_recorded = True
                self.latency.record("synthesis", (time.perf_counter() - pb.queued_at_wall) * 1000)
                self._response_wall = None
        if pb.stream is not None:
            self.costs.add(f"tts.{self.audio.tts.name}", pb.stream.engine_seconds - tts_before)

    def _track_playback(self) -> None:
        pb = self._playing
        if pb is None:
            return
        mark, sent_seq = self.media.played_position()
        if mark is None or mark.prompt_id != pb.prompt.prompt_id:
            return
        if pb.first_sent_seq is None:
            pb.first_sent_seq = sent_seq - (mark.end_sample // self._frame_samples - 1)
            if self._awaiting_response_since is not None:
                first_audio_t = pb.first_sent_seq * FRAME_S
                self.latency.record("e2e", max(0.0, first_audio_t - self._awaiting_response_since) * 1000)
                self._awaiting_response_since = None
        # Done once the last frame has gone out entirely (it is on the wire during the tick it was sent).
        if pb.exhausted and len(pb.pending) == 0 and mark.end_sample >= pb.produced and self._seq > sent_seq:
            self._prompt_done(pb, cut=False)

    def _prompt_done(self, pb: _Playback, cut: bool, played_samples: int | None = None) -> None:
        self._playing = None
        prompt = pb.prompt
        total_ms = int(pb.produced * 1000 / self.rate)
        if not cut:
            self._emit(ev.PromptPlayed(self._now, prompt_id=prompt.prompt_id, played_ms=total_ms))
            if prompt.cacheable and self.audio.cache is not None and pb.stream is not None and pb.all_pcm:
                self._cache_prompt(pb)
            self._handle_outputs(self._brain_call(b.PromptFinished(prompt.prompt_id, self._now)))
        else:
            played = played_samples or 0
            heard = [w for w in pb.words if w.end_sample <= played]
            heard_text = " ".join(w.word for w in heard)
            self._emit(ev.PromptCut(self._now, prompt_id=prompt.prompt_id, played_ms=int(played * 1000 / self.rate),
                                    total_ms=total_ms, words_heard=len(heard), words_total=len(pb.words),
                                    heard_text=heard_text))
            self._handle_outputs(self._brain_call(
                b.PromptFinished(prompt.prompt_id, self._now, cut=True, words_heard=len(heard), heard_text=heard_text)
            ))
        if self._playing is None:
            self._start_next_prompt()

    def _cache_prompt(self, pb: _Playback) -> None:
        from voiceivr.speech.base import Utterance

        pcm = np.concatenate(pb.all_pcm)
        cache = self.audio.cache
        assert cache is not None
        try:
            cache.put(pb.prompt.text, self.audio.tts.voice, self.rate, Utterance(pcm, self.rate, pb.words))
        except OSError as exc:  # a full disk must not end the call
            log.warning("prompt cache write failed", extra={"call_id": self.call_id, "error": str(exc)})

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
        if self._turn is None and not self._digits and not self._sleeping:
            self._no_input_deadline = self._now + self._listen.no_input_timeout_s

    def _track_level(self, clean: Pcm) -> None:
        """The caller channel's level against its noise floor: a sudden rise is the earliest sign of speech."""
        level = level_dbfs(clean)
        self._level = level
        floor = self._noise_floor
        # The floor falls at once and rises slowly (3 dB a second): speech never becomes the floor. It never
        # goes below -70 dBFS, so a line that was digitally silent does not hold the prompt on its first hiss.
        self._noise_floor = max(-70.0, level if level < floor else floor + 3.0 * FRAME_S)
        self._loud_onset = level > -45.0 and level > floor + self.s.barge_in_hold_db

    def _hold(self, trigger: str = "vad") -> None:
        """Caller speech started over an interruptible prompt: stop sending it at once, keep its place.

        The VAD's start event comes about 70 ms after the true onset; the barge-in itself waits for
        call.barge_in_min_speech_ms of speech (or, with backchannels ignored, for words). Holding the prompt in
        between makes the agent go quiet as fast as the VAD can tell, and a cough or an "uh-huh" only pauses
        it: :meth:`_release_hold` sends the rest from where it stopped.
        """
        pb = self._playing
        if pb is None or pb.held or not pb.prompt.interruptible:
            return
        taken = self.media.take_queued()
        if taken:
            back = np.frombuffer(b"".join(pcm for pcm, _ in taken), dtype="<i2").astype(np.int16)
            pb.pending = np.concatenate([back, pb.pending])
            pb.produced -= len(back)
            del pb.all_pcm[-len(taken):]
        pb.held = True
        pb.held_at = self._now
        self._emit(ev.Note(self._now, kind="prompt.held", detail={"prompt_id": pb.prompt.prompt_id, "by": trigger,
                                                                  "frames_taken_back": len(taken)}))

    def _release_hold(self) -> None:
        pb = self._playing
        if pb is None or not pb.held:
            return
        pb.held = False
        self._emit(ev.Note(self._now, kind="prompt.resumed", detail={"prompt_id": pb.prompt.prompt_id}))
        self._fill_outbox()

    def _barge_in(self, onset: float) -> None:
        pb = self._playing
        if pb is None or not pb.prompt.interruptible:
            return
        dropped = self.media.clear()
        if pb.stream is not None:
            pb.stream.cancel()
        mark, _ = self.media.played_position()
        played = mark.end_sample if mark is not None and mark.prompt_id == pb.prompt.prompt_id else 0
        self._emit(ev.BargeIn(self._now, prompt_id=pb.prompt.prompt_id, onset=onset, dropped_frames=dropped))
        flushed = list(self._queued_prompts)
        self._queued_prompts.clear()
        self._after_playback = [o for o in self._after_playback if not isinstance(o, b.EndCall | b.TransferCall)]
        self._prompt_done(pb, cut=True, played_samples=played)
        for p in flushed:  # never started: heard with 0 words
            self._emit(ev.Note(self._now, kind="prompt.dropped", detail={"prompt_id": p.prompt_id}))
            self._handle_outputs(self._brain_call(b.PromptFinished(p.prompt_id, self._now, cut=True)))

    # --------------------------------------------------------------------------------------- the brain

    def _brain_call(self, event: b.BrainInput | None) -> list[b.BrainOutput]:
        try:
            return self.brain.start() if event is None else self.brain.handle(event)
        except Exception:  # one call's bug must not take the worker down silently: end this call cleanly
            log.exception("conversation logic failed; ending the call", extra={"call_id": self.call_id})
            return [b.Say(ev.Reply(self._now, prompt_id=0,
                                   text="Sorry, something went wrong on our side. Please call again later.")),
                    b.EndCall("internal error", outcome="error")]

    def _handle_outputs(self, outputs: list[b.BrainOutput]) -> None:
        if any(isinstance(out, b.Listen) and out.secret for out in outputs):
            # Before the prompt asking for it starts synthesising: a caller who keys ahead is already inside.
            self.media.secret.active = True
        said = False
        for out in outputs:
            if isinstance(out, b.Say):
                prompt = out.prompt
                if prompt.prompt_id <= 0:
                    prompt = dataclasses.replace(prompt, prompt_id=self._new_prompt_id(), t=self._now)
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
                if self._playing is None and not self._queued_prompts:
                    self._playback_idle()
            elif isinstance(out, b.Trace):
                self._trace(out)
        quiet = self._playing is None and not self._queued_prompts and self._turn is None
        if not said and quiet and not self.ended and not self._digits and not self._sleeping:
            self._no_input_deadline = self._now + self._listen.no_input_timeout_s

    def _trace(self, out: b.Trace) -> None:
        if out.kind == "intent":
            d = out.detail
            self._emit(ev.IntentRecognized(self._now, intent=str(d.get("intent", "")), tier=d.get("tier"),
                                           confidence=float(d.get("confidence", 0.0)), node=str(d.get("node", ""))))
        elif out.detail:
            self._emit(ev.Note(self._now, kind=out.kind, detail=dict(out.detail)))
        for stage, seconds in out.stage_seconds.items():
            if stage in ("intent", "policy", "tool"):
                self.latency.record(stage, seconds * 1000)
            else:
                self.costs.add(stage, seconds)

    # -------------------------------------------------------------------------------------------- end

    def _finish(self, outcome: str, reason: str, hang_up: bool = True) -> None:
        if self.ended:
            return
        if self._turn is not None and self._turn.stt is not None:
            self._turn.stt.cancel()
        self._turn = None
        if self._playing is not None and self._playing.stream is not None:
            self._playing.stream.cancel()
        self.media.clear()
        if self.denoise is not None:
            self.denoise.close()
        self.ended = True
        self.outcome = outcome
        self.end_reason = reason
        self._emit(ev.CallEnded(self._now, outcome=outcome, reason=reason))
        if hang_up and self.control is not None:
            self.control.hangup(reason)

    def _emit(self, event: ev.Event) -> None:
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


class CallWorker:
    """Runs one session on its own thread for a live call; implements the SIP edge's CallEvents."""

    def __init__(self, session: CallSession, idle_poll_s: float = 0.1) -> None:
        self.session = session
        self._idle_poll_s = idle_poll_s
        self._thread = threading.Thread(target=self._run, name=f"call-{session.call_id[:8]}", daemon=True)
        self.error: BaseException | None = None
        self._t0 = time.monotonic()

    def start(self) -> CallWorker:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # CallEvents (called by the SIP thread; each only enqueues)
    def on_dtmf(self, digit: str, method: str) -> None:
        self.session.post(ev.DtmfDigit(0.0, digit=digit, method=method))

    def on_media_moved(self, new_address: Any) -> None:
        addr = "" if new_address is None else f"{new_address.host}:{new_address.port}"
        self.session.post(ev.MediaMoved(0.0, address=addr))

    def on_dialog_replaced(self, reason: str) -> None:
        self.session.post(ev.DialogReplaced(0.0, reason=reason))

    def on_remote_hangup(self) -> None:
        self.session.post(ev.Hangup(0.0, by="caller"))
        self.session.media.close()

    def _run(self) -> None:
        s = self.session
        try:
            s.start()
            while not s.ended:
                frame = s.media.read(timeout=self._idle_poll_s)
                if frame is None:
                    if s.media.closed:
                        s.idle(time.monotonic() - self._t0)
                        if not s.ended:
                            s.post(ev.Hangup(0.0, by="caller", reason="media closed"))
                            s.idle(time.monotonic() - self._t0)
                        break
                    s.idle(time.monotonic() - self._t0)
                    continue
                s.process(frame)
        except BaseException as exc:  # reported, and this call is ended; other calls go on
            self.error = exc
            log.exception("call worker failed", extra={"call_id": s.call_id})
            if s.control is not None:
                s.control.hangup("internal error")
