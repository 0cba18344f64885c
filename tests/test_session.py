"""The call session on scripted timelines: barge-in, uninterruptible prompts, echo, no-input, DTMF.

Engines are the fakes of voiceivr/testing/speech.py (caller speech = tone bursts); the sample streams, the echo
path and the 20 ms media clock are real. Replays of real speech through the real engines are in test_replay.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import numpy as np
import pytest

from tests.support.fakes import RATE, ScriptedBrain, caller_audio, prompt_seconds
from tests.support.session import LONG, barge_in_run, make_session, say
from voiceivr.call import brain as b
from voiceivr.call import events as ev
from voiceivr.call.driver import DriveResult, EchoPath, drive
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.call.store import turns_from_timeline
from voiceivr.call.worker import CallWorker
from voiceivr.dialplan.io import DtmfSpec
from voiceivr.settings import CallSettings
from voiceivr.testing.speech import EnergyVad


def events(session: CallSession, kind: type[ev.Event]) -> list:  # type: ignore[type-arg]
    return [e for e in session.timeline if isinstance(e, kind)]


def loud_frames(result: DriveResult, start_s: float, end_s: float | None = None) -> int:
    n = RATE // 50
    a = int(start_s * 50)
    z = len(result.agent) // n if end_s is None else int(end_s * 50)
    return sum(1 for i in range(a, z) if np.abs(result.agent[i * n : (i + 1) * n]).max() > 500)


# ------------------------------------------------------------------------------------------- one turn


def test_a_simple_turn_and_its_latencies() -> None:
    brain = ScriptedBrain(
        greeting=[say("welcome please speak", pid=1), b.Listen(grammar=["yes", "no"])],
        replies=[[say("you said yes", pid=2), b.EndCall("done")]],
    )
    session, tts, _stt, control = make_session(brain)
    greet_s = prompt_seconds("welcome please speak")
    audio = caller_audio([(greet_s + 0.5, greet_s + 1.0, 700)], total_s=greet_s + 1.2)
    drive(session, audio)

    (utterance,) = brain.inputs(b.Utterance)
    assert utterance.text == "yes" and utterance.confidence == pytest.approx(0.9)
    assert utterance.started_at == pytest.approx(greet_s + 0.5, abs=0.03)
    assert len(utterance.audio_sha256) == 64
    assert tts.spoken == ["welcome please speak", "you said yes"]
    assert session.ended and control.hangups == ["done"]
    played = [e.prompt_id for e in events(session, ev.PromptPlayed)]
    assert played == [1, 2]
    summary = session.summary()
    lat = summary["latency"]
    # "yes" matches the grammar: the fast end of turn applies (200 ms) instead of the full 600 ms
    assert 200 <= lat["e2e"]["p50"] <= 300, lat
    assert lat["capture"]["count"] == 1 and lat["synthesis"]["count"] == 2
    assert summary["engine_seconds"]["stt.tone"] > 0  # the fake recogniser's time is accounted


def _late_vad_session(**call: object) -> tuple[CallSession, ScriptedBrain]:
    """A VAD that reports the end of speech 400 ms late, as Silero does about 200 ms late."""
    brain = ScriptedBrain(
        greeting=[say("hello", pid=1), b.Listen(grammar=["yes", "no"])],
        replies=[[say("you said yes", pid=2), b.Listen(grammar=["yes", "no"])], [say("and again", pid=3)]],
    )
    session, *_ = make_session(brain, EnergyVad(min_silence_ms=400), **call)
    return session, brain


@pytest.mark.parametrize("energy", [True, False])
def test_a_complete_phrase_ends_on_the_quiet_line_before_the_vad_says_so(energy: bool) -> None:
    session, brain = _late_vad_session(energy_end_of_turn=energy)
    drive(session, caller_audio([(1.0, 1.5, 700)], total_s=3.0))
    (utterance,) = brain.inputs(b.Utterance)
    assert utterance.text == "yes"
    assert utterance.ended_at == pytest.approx(1.5, abs=0.03)  # dated at the audible end either way
    e2e = session.summary()["latency"]["e2e"]["p50"]
    assert (200 <= e2e <= 260) if energy else (e2e >= 400), e2e


def test_speech_right_after_an_energy_ended_turn_is_a_turn_of_its_own() -> None:
    session, brain = _late_vad_session(echo_suppression=False)  # the second "yes" barges in on the reply
    # "yes", 260 ms of quiet (the turn ends at 200 ms, while the late VAD still hears speech), "yes" again
    a = prompt_seconds("hello") + 0.2
    drive(session, caller_audio([(a, a + 0.5, 700), (a + 0.76, a + 1.26, 700)], total_s=a + 3.0))
    assert [u.text for u in brain.inputs(b.Utterance)] == ["yes", "yes"]


def test_incomplete_phrase_waits_the_full_end_of_turn() -> None:
    brain = ScriptedBrain(
        greeting=[say("hello", pid=1), b.Listen(grammar=["yes", "no"])],
        replies=[[say("thanks", pid=2)]],
    )
    session, *_ = make_session(brain)
    audio = caller_audio([(1.0, 1.8, 900)], total_s=2.0)  # "check my balance" is not in the grammar
    drive(session, audio)
    e2e = session.summary()["latency"]["e2e"]["p50"]
    assert 600 <= e2e <= 700


def test_the_recogniser_hears_only_speech() -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen()], replies=[[say("ok", pid=2)]])
    session, _, stt, _ = make_session(brain)
    audio = caller_audio([(3.0, 3.5, 700)], total_s=6.0)
    drive(session, audio, tail_s=1.0)
    assert len(stt.streams) == 1
    fed_s = stt.streams[0].fed * 0.02
    # 0.5 s of speech plus up to preroll (0.3 s) and the VAD's end-of-speech hangover
    assert 0.5 <= fed_s <= 1.0, fed_s
    # every frame once, in order, with no hole: the pre-roll joins the live frames seamlessly
    fed_at = stt.streams[0].fed_at
    assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(fed_at)), fed_at


# ------------------------------------------------------------------------------------------ barge-in


def test_barge_in_stops_audio_within_one_frame_and_records_what_was_heard() -> None:
    session, brain, tts, result = barge_in_run()
    (barge,) = events(session, ev.BargeIn)
    assert barge.prompt_id == 1
    assert barge.onset == pytest.approx(1.5, abs=0.03)
    assert barge.t - barge.onset <= 0.25  # decision within 250 ms of the true onset
    # The prompt was held as soon as the VAD heard speech start (before the barge-in decision): nothing of
    # prompt 1 after the tick following the hold, and the cut prompt was heard up to the hold.
    (held,) = [e for e in events(session, ev.Note) if e.kind == "prompt.held"]
    assert held.detail["by"] == "energy"  # the first loud frame, before even the VAD's first speech window
    assert barge.onset <= held.t <= barge.t and held.t - barge.onset <= 0.04
    hold_tick = round(held.t / 0.02)
    assert loud_frames(result, (hold_tick + 1) * 0.02, 2.9) == 0
    assert loud_frames(result, held.t - 0.3, held.t) > 0  # it was playing until then
    assert not [e for e in events(session, ev.Note) if e.kind == "prompt.resumed"]
    (cut,) = events(session, ev.PromptCut)
    word = 0.18
    assert cut.played_ms == pytest.approx((hold_tick + 1) * 20, abs=20)
    assert cut.words_heard == int(cut.played_ms / 1000 / word + 0.17)  # whole words whose audio left
    assert cut.heard_text == " ".join(LONG.split()[: cut.words_heard])
    assert cut.words_total >= cut.words_heard
    # the producer was cancelled and the prompt queued after it was dropped, never spoken
    assert tts.streams[0].cancelled
    assert "and then this follows" not in tts.spoken
    assert any(e.kind == "prompt.dropped" for e in events(session, ev.Note))
    (finished,) = [e for e in brain.seen if isinstance(e, b.PromptFinished) and e.prompt_id == 1]
    assert finished.cut and finished.heard_text == cut.heard_text
    # the caller's words are the answer, and the agent replies after the turn ends
    (utt,) = brain.inputs(b.Utterance)
    assert utt.text == "tell me about opening hours please"
    assert tts.spoken[-1] == "sure"


def test_dtmf_barges_in_too() -> None:
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()], replies=[[say("one it is", pid=2)]])
    session, *_ = make_session(brain)
    drive(session, caller_audio([], total_s=2.0), control=[(1.0, ev.DtmfDigit(0, digit="1"))])
    (barge,) = events(session, ev.BargeIn)
    assert barge.t == pytest.approx(1.0, abs=0.021)
    assert brain.inputs(b.Digits) == [b.Digits("1", "single", pytest.approx(1.0, abs=0.021),
                                               pytest.approx(1.0, abs=0.021))]


def test_uninterruptible_prompt_plays_to_the_end_and_speech_over_it_is_no_answer() -> None:
    text = "you asked to transfer fifty dollars from checking to savings is that right"
    brain = ScriptedBrain(
        greeting=[say(text, kind=ev.ReadBack, pid=1), b.Listen(grammar=["yes", "no"])],
        replies=[[say("confirmed", pid=2)]],
    )
    session, _tts, stt, _ = make_session(brain)
    dur = prompt_seconds(text)
    # "yes" over the read-back (must not count), then "yes" after it (counts)
    audio = caller_audio([(1.0, 1.5, 700), (dur + 0.6, dur + 1.1, 700)], total_s=dur + 1.5)
    result = drive(session, audio)
    assert events(session, ev.BargeIn) == []
    assert [e.prompt_id for e in events(session, ev.PromptPlayed)][:1] == [1]
    assert loud_frames(result, 1.6, dur - 0.1) > 0.8 * (dur - 1.7) * 50  # kept playing over the caller
    ignored = [e for e in events(session, ev.TranscriptFinal) if e.ignored]
    assert len(ignored) == 1 and ignored[0].ignored == "during uninterruptible prompt"
    (utt,) = brain.inputs(b.Utterance)
    assert utt.started_at > dur  # only the yes after the read-back reached the brain
    assert len(stt.streams) == 1  # and nothing was spent recognising the ignored one
    (over,) = brain.inputs(b.Overheard)  # but the brain is told, for the record
    assert over.prompt_id == 1 and over.kind == "speech" and 0.9 < over.started_at < 1.1 < over.ended_at < dur


def test_keys_during_uninterruptible_prompt_are_ignored() -> None:
    brain = ScriptedBrain(greeting=[say("your code was sent to the phone ending 1234", kind=ev.CodeRequest, pid=1),
                                    b.Listen(dtmf=DtmfSpec(max_digits=6, terminator="#"))])
    session, *_ = make_session(brain)
    drive(session, caller_audio([], total_s=2.0), control=[(0.5, ev.DtmfDigit(0, digit="9"))])
    assert events(session, ev.BargeIn) == [] and brain.inputs(b.Digits) == []
    assert any(e.kind == "dtmf.ignored" for e in events(session, ev.Note))
    assert [(o.prompt_id, o.kind) for o in brain.inputs(b.Overheard)] == [(1, "dtmf")]


# ------------------------------------------------------------------------------------------------ echo


def test_own_echo_does_not_interrupt() -> None:
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()])
    session, _, stt, _ = make_session(brain)
    result = drive(session, caller_audio([], total_s=5.0), echo=EchoPath(gain_db=-12, delay_ms=60), tail_s=0.5)
    assert events(session, ev.BargeIn) == []
    assert [e.prompt_id for e in events(session, ev.PromptPlayed)] == [1]
    assert stt.streams == [] and brain.inputs(b.Utterance) == []
    assert [e for e in events(session, ev.Note) if e.kind == "prompt.held"] == []  # no stutter either
    # the echo really was on the line, loud enough for a level detector
    rms = np.sqrt(np.mean(result.caller[RATE : 3 * RATE].astype(float) ** 2))
    assert 20 * np.log10(rms / 32768) > -30


def test_without_echo_suppression_the_echo_would_interrupt() -> None:
    """Proves the test above tests something: the same line, suppression off, barges in on itself."""
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()])
    session, *_ = make_session(brain, echo_suppression=False)
    drive(session, caller_audio([], total_s=3.0), echo=EchoPath(gain_db=-12, delay_ms=60), tail_s=0.5)
    assert len(events(session, ev.BargeIn)) == 1


@pytest.mark.parametrize(("gain_db", "delay_ms"), [(-6, 20), (-12, 60), (-18, 150), (-10, 300)])
def test_speech_over_echo_still_barges_in(gain_db: float, delay_ms: float) -> None:
    session, brain, _, _ = barge_in_run(echo=EchoPath(gain_db=gain_db, delay_ms=delay_ms))
    (barge,) = events(session, ev.BargeIn)
    assert barge.onset == pytest.approx(1.5, abs=0.06)
    assert barge.t - 1.5 <= 0.25
    (utt,) = brain.inputs(b.Utterance)
    assert utt.text == "tell me about opening hours please"


def test_a_click_over_a_prompt_only_pauses_it() -> None:
    """A 20 ms click is loud enough to hold the prompt but is no speech: the prompt goes on, all of it heard."""
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()])
    session, *_ = make_session(brain)
    audio = caller_audio([], total_s=5.0)
    audio[int(1.0 * RATE): int(1.02 * RATE)] = 12000  # a click
    drive(session, audio, tail_s=0.5)
    assert events(session, ev.BargeIn) == [] and events(session, ev.SpeechStarted) == []
    notes = [e for e in events(session, ev.Note) if e.kind in ("prompt.held", "prompt.resumed")]
    assert [e.kind for e in notes] == ["prompt.held", "prompt.resumed"]
    assert notes[1].t - notes[0].t == pytest.approx(0.16, abs=0.03)  # call.barge_in_hold_confirm_ms
    (played,) = events(session, ev.PromptPlayed)
    assert played.played_ms == pytest.approx(len(LONG.split()) * 180, abs=40)


@pytest.mark.parametrize("mode", ["vad", "off"])
def test_hold_modes(mode: str) -> None:
    session, *_ = barge_in_run(barge_in_hold=mode)
    (barge,) = events(session, ev.BargeIn)
    held = [e for e in events(session, ev.Note) if e.kind == "prompt.held"]
    if mode == "off":
        assert held == []
    else:
        assert held[0].detail["by"] == "vad" and barge.onset < held[0].t <= barge.t


# ------------------------------------------------------------------------------------------ backchannel


def test_backchannel_ignored_when_configured() -> None:
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()])
    session, _tts, *_ = make_session(brain, backchannel="ignore")
    drive(session, caller_audio([(1.0, 1.3, 1100)], total_s=5.0), tail_s=0.5)  # "okay"
    assert events(session, ev.BargeIn) == []
    assert [e.text for e in events(session, ev.Backchannel)] == ["okay"]
    assert [e.prompt_id for e in events(session, ev.PromptPlayed)] == [1]
    assert brain.inputs(b.Utterance) == []
    # The prompt went quiet while the caller talked and then went on from where it stopped: all of it played.
    notes = [e for e in events(session, ev.Note) if e.kind in ("prompt.held", "prompt.resumed")]
    assert [e.kind for e in notes] == ["prompt.held", "prompt.resumed"]
    assert 1.0 <= notes[0].t < 1.15 and notes[1].t > 1.3
    (played,) = events(session, ev.PromptPlayed)
    assert played.played_ms == pytest.approx(len(LONG.split()) * 180, abs=40)


def test_backchannel_ignore_mode_still_yields_to_real_speech() -> None:
    session, brain, _, _ = barge_in_run(backchannel="ignore")
    (barge,) = events(session, ev.BargeIn)
    assert barge.t - barge.onset <= 0.65  # waits backchannel_max_ms or a substantive word, not longer
    assert brain.inputs(b.Utterance)[0].text == "tell me about opening hours please"


def test_backchannel_stops_the_prompt_in_stop_mode() -> None:
    brain = ScriptedBrain(greeting=[say(LONG, pid=1), b.Listen()])
    session, *_ = make_session(brain, backchannel="stop")
    drive(session, caller_audio([(1.0, 1.3, 1100)], total_s=3.0), tail_s=0.5)
    assert len(events(session, ev.BargeIn)) == 1


# --------------------------------------------------------------------------------------- DTMF and turns


def test_digits_collected_with_terminator_timeout_and_max_length() -> None:
    spec = DtmfSpec(max_digits=6, terminator="#", inter_digit_timeout_s=1.0)
    brain = ScriptedBrain(
        greeting=[say("key your account number", pid=1), b.Listen(dtmf=spec)],
        replies=[[b.Listen(dtmf=spec)], [b.Listen(dtmf=DtmfSpec(max_digits=4, terminator="#"))], [], []],
    )
    session, *_ = make_session(brain)
    keys = [(2.0, "1"), (2.3, "2"), (2.6, "3"), (2.9, "#"), (4.0, "4"), (4.2, "5"),
            (6.0, "9"), (6.1, "8"), (6.2, "7"), (6.3, "6"), (6.4, "#")]  # a # after a full entry is swallowed
    drive(session, caller_audio([], total_s=7.0), control=[(t, ev.DtmfDigit(0, digit=d)) for t, d in keys])
    got = [(d.digits, d.reason) for d in brain.inputs(b.Digits)]
    assert got == [("123", "terminator"), ("45", "timeout"), ("9876", "max_length")]


def test_pound_after_a_full_entry_neither_barges_in_nor_answers_the_next_question() -> None:
    """The PIN is complete at its fourth digit and the brain answers at once, with a new question that takes one
    key; the # the caller presses out of habit belongs to the PIN, not to the reply or the question."""
    brain = ScriptedBrain(
        greeting=[say("your pin please", pid=1), b.Listen(dtmf=DtmfSpec(max_digits=4, terminator="#"))],
        replies=[[say("thank you alice you asked me to transfer fifty dollars", pid=2),
                  b.Listen(dtmf=DtmfSpec(max_digits=0))], [say("got it", pid=3)]],
    )
    session, *_ = make_session(brain)
    keys = [(2.0 + 0.15 * i, d) for i, d in enumerate("1234#")]
    drive(session, caller_audio([], total_s=6.0), control=[(t, ev.DtmfDigit(0, digit=d)) for t, d in keys])
    assert [(d.digits, d.reason) for d in brain.inputs(b.Digits)] == [("1234", "max_length")]
    assert events(session, ev.BargeIn) == []
    assert 2 in [e.prompt_id for e in events(session, ev.PromptPlayed)]
    assert any(e.kind == "dtmf.ignored" for e in events(session, ev.Note))


def test_dtmf_mixed_with_speech() -> None:
    brain = ScriptedBrain(
        greeting=[say("say yes or press one", pid=1), b.Listen(grammar=["yes"])],
        replies=[[say("and now your pin", pid=2), b.Listen(dtmf=DtmfSpec(max_digits=4, terminator="#"))],
                 [say("thanks", pid=3)]],
    )
    session, *_ = make_session(brain)
    start = prompt_seconds("say yes or press one") + 0.3
    after = start + 1.0 + prompt_seconds("and now your pin") + 0.5
    audio = caller_audio([(start, start + 0.5, 700)], total_s=after + 2.0)
    keys = [(after + 0.1 * i, d) for i, d in enumerate("4321")]
    drive(session, audio, control=[(t, ev.DtmfDigit(0, digit=d)) for t, d in keys])
    inputs = [e for e in brain.seen if isinstance(e, b.Utterance | b.Digits)]
    assert [type(e).__name__ for e in inputs] == ["Utterance", "Digits"]
    assert inputs[0].text == "yes" and inputs[1].digits == "4321"  # type: ignore[union-attr]


class FlagSpy:
    """A recorder that notes, frame by frame, whether the session said the caller is giving a secret."""

    def __init__(self, media: MediaChannel) -> None:
        self.media = media
        self.active: list[bool] = []

    def caller_frame(self, pcm: bytes) -> None:
        self.active.append(self.media.secret.active)

    def agent_frame(self, pcm: bytes) -> None:
        pass

    def dtmf(self, digit: str, method: str, delivered: bool = True) -> None:
        pass

    def during(self, start_s: float, end_s: float) -> set[bool]:
        return set(self.active[int(start_s * 50):int(end_s * 50)])


def test_secret_input_leaves_no_digits_or_words_on_the_timeline() -> None:
    """A PIN keyed and a code said while the brain listens for a secret: the brain gets both, but the timeline
    (and the turn rows made from it) keep neither, and the recorder is told for as long as the secret input lasts."""
    pin = b.Listen(dtmf=DtmfSpec(max_digits=4, terminator="#"), secret=True)
    code = b.Listen(grammar=["check my balance"], secret=True)  # tone 900 stands for the code, read out
    brain = ScriptedBrain(
        greeting=[say("your pin please", pid=1), pin],
        replies=[[say("and now the code", pid=2), code], [say("thank you", pid=3), b.Listen(grammar=["yes"])],
                 [say("bye", pid=4)]],
    )
    session, *_ = make_session(brain)
    keys_at = prompt_seconds("your pin please") + 0.5
    speak = keys_at + 0.75 + prompt_seconds("and now the code") + 0.5
    yes = speak + 1.0 + 0.8 + prompt_seconds("thank you") + 0.5
    audio = caller_audio([(speak, speak + 1.0, 900), (yes, yes + 0.5, 700)], total_s=yes + 2.0)
    spy = FlagSpy(session.media)
    keys = [(keys_at + 0.15 * i, d) for i, d in enumerate("1234#")]
    drive(session, audio, control=[(t, ev.DtmfDigit(0, digit=d)) for t, d in keys], recorder=spy)

    assert [d.digits for d in brain.inputs(b.Digits)] == ["1234"]  # the conversation still gets them
    assert [u.text for u in brain.inputs(b.Utterance)] == ["check my balance", "yes"]  # type: ignore[attr-defined]
    keyed = events(session, ev.DtmfDigit)
    assert [(k.digit, k.secret) for k in keyed] == [("", True)] * 4 + [("#", False)]  # the # only ends the entry
    assert [(d.digits, d.secret) for d in events(session, ev.DigitsCollected)] == [("", True)]
    finals = events(session, ev.TranscriptFinal)
    assert [(f.text, f.secret) for f in finals] == [("", True), ("yes", False)]
    assert not [p for p in events(session, ev.TranscriptPartial) if "balance" in p.text]
    assert [t.transcript for t in turns_from_timeline(session.timeline)] == ["[secret]", "[secret]", "yes"]
    text = repr([e.to_dict() for e in session.timeline])
    assert "balance" not in text and all(f"'digit': '{d}'" not in text for d in "1234")
    # From the question for the PIN until the code has been taken; not while the caller says yes.
    assert spy.during(0.1, keys_at + 0.6) == {True}
    assert spy.during(speak, speak + 1.0) == {True}
    assert spy.during(yes, yes + 0.5) == {False} and not session.media.secret.active


def test_no_input_reprompts_then_sleeps_then_hangs_up_politely() -> None:
    brain = ScriptedBrain(
        greeting=[say("hello", pid=1), b.Listen(no_input_timeout_s=2.0)],
        replies=[[say("are you there", pid=2), b.Listen(no_input_timeout_s=2.0)]] * 10,
    )
    session, tts, stt, control = make_session(brain, idle_sleep_s=8.0, idle_hangup_s=14.0)
    drive(session, caller_audio([], total_s=20.0), tail_s=0.0)
    counts = [e.count for e in events(session, ev.NoInput)]
    assert counts[:2] == [1, 2] and len(counts) >= 2
    (sleep,) = events(session, ev.Sleeping)
    assert 8.0 <= sleep.t <= 8.1
    assert all(n.t < sleep.t for n in events(session, ev.NoInput))  # no reprompts while asleep
    assert tts.spoken[-1] == CallSettings().idle_goodbye
    assert session.ended and session.outcome == "abandoned" and control.hangups == ["caller idle"]
    assert stt.streams == []


def test_speech_wakes_a_sleeping_call() -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen(no_input_timeout_s=30.0)],
                          replies=[[say("welcome back", pid=2)]])
    session, tts, *_ = make_session(brain, idle_sleep_s=2.0, idle_hangup_s=60.0)
    drive(session, caller_audio([(4.0, 4.5, 700)], total_s=5.0), tail_s=1.0)
    assert len(events(session, ev.Sleeping)) == 1
    assert brain.inputs(b.Utterance)[0].text == "yes" and tts.spoken[-1] == "welcome back"


def test_max_utterance_closes_the_turn() -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen()], replies=[[say("got it", pid=2)]])
    session, *_ = make_session(brain, max_utterance_s=2.0)
    drive(session, caller_audio([(1.0, 6.0, 700)], total_s=6.0), tail_s=0.5)
    (utt,) = brain.inputs(b.Utterance)
    assert utt.ended_at - utt.started_at == pytest.approx(2.0, abs=0.05)


# ------------------------------------------------------------------------------------ endings and errors


def test_caller_hangup_cancels_recognition() -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen()])
    session, _, stt, control = make_session(brain)
    drive(session, caller_audio([(1.0, 3.0, 700)], total_s=3.0), control=[(1.5, ev.Hangup(0, by="caller"))])
    assert session.ended and stt.streams[0].cancelled
    assert events(session, ev.CallEnded)[0].reason == "hangup by caller"
    assert control.hangups == ["hangup by caller"]


def test_transfer_waits_for_the_announcement() -> None:
    brain = ScriptedBrain(greeting=[say("connecting you to an agent", pid=1), b.TransferCall("sip:agent@pbx")])
    session, _, _, control = make_session(brain)
    drive(session, caller_audio([], total_s=3.0))
    (transfer,) = events(session, ev.Transfer)
    assert transfer.t >= prompt_seconds("connecting you to an agent")
    assert control.transfers == ["sip:agent@pbx"] and session.outcome == "transferred"


class _BrokenBrain(ScriptedBrain):
    def handle(self, event: b.BrainInput) -> list[b.BrainOutput]:
        if isinstance(event, b.Utterance):
            raise RuntimeError("bug in a dialplan action")
        return super().handle(event)


def test_a_brain_failure_ends_this_call_cleanly() -> None:
    brain = _BrokenBrain(greeting=[say("hello", pid=1), b.Listen()])
    session, tts, _, control = make_session(brain)
    drive(session, caller_audio([(1.0, 1.5, 700)], total_s=2.0), tail_s=5.0)
    assert session.ended and session.outcome == "error"
    assert "something went wrong" in tts.spoken[-1]
    assert control.hangups == ["internal error"]


def test_budget_breaches_are_on_the_timeline_without_content(caplog: pytest.LogCaptureFixture) -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen()], replies=[[say("ok", pid=2)]])
    session, *_ = make_session(brain)
    session.latency.budgets = dataclasses.replace(session.latency.budgets, e2e=100.0)
    drive(session, caller_audio([(1.0, 1.5, 900)], total_s=2.0))
    assert ("e2e", pytest.approx(620, abs=30)) in [(s, ms) for s, ms in session.latency.breaches]
    breach_logs = [r for r in caplog.records if r.getMessage() == "latency budget breached"]
    assert breach_logs and all(getattr(r, "call_id", None) == "test-call" for r in breach_logs)
    assert "balance" not in caplog.text


def test_two_runs_give_the_same_timeline() -> None:
    def run() -> list[dict]:  # type: ignore[type-arg]
        session, *_ = barge_in_run(echo=EchoPath())
        return [e.to_dict() for e in session.timeline]

    assert run() == run()


# ----------------------------------------------------------------------------------- the live worker


def test_call_worker_runs_a_session_on_its_own_thread() -> None:
    brain = ScriptedBrain(greeting=[say("press a key", pid=1), b.Listen()], replies=[[say("bye", pid=2),
                                                                                       b.EndCall("done")]])
    session, tts, _, control = make_session(brain)
    worker = CallWorker(session).start()
    media = session.media
    stop = threading.Event()

    def media_clock() -> None:  # what pjsua2's clock thread does, 4x faster than real time
        silence = bytes(media.frame_bytes)
        while not stop.is_set():
            media.next_outgoing()
            media.deliver(silence)
            time.sleep(0.005)

    clock = threading.Thread(target=media_clock, daemon=True)
    clock.start()
    try:
        time.sleep(0.3)
        worker.on_dtmf("5", "rfc4733")
        worker.join(timeout=10)
    finally:
        stop.set()
        clock.join()
    assert worker.error is None
    assert [d.digits for d in brain.inputs(b.Digits)] == ["5"]
    assert session.ended and control.hangups == ["done"] and tts.spoken == ["press a key", "bye"]


def test_remote_hangup_stops_the_worker() -> None:
    brain = ScriptedBrain(greeting=[say("hello", pid=1), b.Listen()])
    session, *_ = make_session(brain)
    worker = CallWorker(session, idle_poll_s=0.01).start()
    worker.on_remote_hangup()
    worker.join(timeout=5)
    assert session.ended and events(session, ev.Hangup)[0].by == "caller"
