"""pocketsphinx on real audio: grammar recognition of the telephone fixtures, real human recordings,
digital silence, partials, pooled decoders, and clear errors for bad grammars and models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.speech_fixtures import entries, frames, grammar_phrases, pcm
from voiceivr.audio.frames import Frame, split_frames
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.model import Routing
from voiceivr.speech.stt.grammar import MONEY_WORDS, GrammarError
from voiceivr.speech.stt.pocketsphinx_stt import (
    CALIBRATION,
    CALIBRATIONS,
    PHONE_LOOP_BEAM,
    UNSCORED_CONFIDENCE,
    PocketsphinxEngine,
    SttModelError,
    calibrated,
    calibration_for,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    return PocketsphinxEngine()


def recognise(engine: PocketsphinxEngine, file: str, grammar: list[str] | None) -> tuple[str, float, int]:
    stream = engine.stream(8000, grammar)
    partials = sum(stream.feed(f) is not None for f in frames(file))
    result = stream.finish()
    assert result.is_final and 0.0 <= result.confidence <= 1.0
    return result.text, result.confidence, partials


def test_grammar_gets_at_least_85_percent_of_telephone_intents(engine: PocketsphinxEngine) -> None:
    phrases = grammar_phrases()
    cases = [e for e in entries("phrase", "tel") if e["intent"] != "long"]
    right = [e for e in cases if recognise(engine, e["file"], phrases)[0] == e["text"]]
    assert len(cases) >= 64
    # a regression floor: 80/80 at the time of writing (docs/speech.md)
    assert len(right) / len(cases) >= 0.85, f"{len(right)}/{len(cases)}"


def test_real_human_recordings_with_their_grammars(engine: PocketsphinxEngine) -> None:
    assert recognise(engine, "human/goforward.wav", ["go forward ten meters", "go backward ten meters",
                                                      "go forward five meters", "stop"])[0] == "go forward ten meters"
    alsa = ["front center", "front left", "front right", "rear center", "rear left", "rear right", "side left",
            "side right"]
    right = sum(recognise(engine, f"human/alsa_{p.replace(' ', '_')}.wav", alsa)[0] == p for p in alsa)
    assert right >= 6, right


def test_partials_come_while_the_caller_speaks(engine: PocketsphinxEngine) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "long")
    text, _confidence, partials = recognise(engine, e["file"], None)  # free speech with the wheel's LM
    assert partials >= 3
    assert len(text.split()) >= 8


def test_digital_silence_around_speech_does_not_break_it(engine: PocketsphinxEngine) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "check_balance" and "piper" in x["voice"])
    idle = pcm("nonspeech/idle_mulaw.wav")
    assert not idle.any()  # exact zeros, as an idle mu-law line decodes
    audio = np.concatenate([idle[:8000], pcm(e["file"]), idle[:8000]])
    stream = engine.stream(8000, grammar_phrases())
    for frame in split_frames(audio, 8000):
        stream.feed(frame)
    result = stream.finish()
    assert result.text == "check my balance" and result.confidence >= 0.5


def test_16k_input_and_rate_checks(engine: PocketsphinxEngine) -> None:
    from voiceivr.audio.resample import resample

    e = next(x for x in entries("phrase", "tel") if x["intent"] == "goodbye" and "piper" in x["voice"])
    stream = engine.stream(16000, grammar_phrases())
    for frame in split_frames(resample(pcm(e["file"]), 8000, 16000), 16000):
        stream.feed(frame)
    assert stream.finish().text == "goodbye"
    with pytest.raises(ValueError, match="8000 or 16000"):
        engine.stream(22050, ["yes"])
    stream = engine.stream(8000, ["yes"])
    with pytest.raises(ValueError, match="8000 Hz"):
        stream.feed(Frame(np.zeros(320, np.int16), 16000, 0.0))
    stream.cancel()


def test_decoders_are_pooled_and_reused(engine: PocketsphinxEngine) -> None:
    first = engine.stream(8000, ["yes", "no"])
    decoder = first._dec
    first.cancel()
    second = engine.stream(8000, ["yes", "no", "maybe"])
    assert second._dec is decoder
    second.finish()
    with pytest.raises(RuntimeError, match="finish"):
        second.finish()


def test_unknown_grammar_word_is_a_clear_error(engine: PocketsphinxEngine) -> None:
    with pytest.raises(GrammarError, match="'flibbertygib'") as err:
        engine.stream(8000, ["yes", "talk to flibbertygib"])
    assert err.value.hint and "speech.pocketsphinx_extra_dict" in err.value.hint


def test_extra_dictionary_adds_words(tmp_path: Path) -> None:
    extra = tmp_path / "extra.dict"
    extra.write_text("# our brand\nvoiceivr V OY S AY V IY AA R\n")
    engine = PocketsphinxEngine(extra_dictionary=str(extra))
    engine.stream(8000, ["call voiceivr"]).cancel()
    bad = tmp_path / "bad.dict"
    bad.write_text("lonely\n")
    with pytest.raises(SttModelError, match=r"bad\.dict:1"):
        PocketsphinxEngine(extra_dictionary=str(bad))


def test_missing_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SttModelError, match=r"speech\.pocketsphinx_model"):
        PocketsphinxEngine(model=str(tmp_path / "nope"))
    with pytest.raises(SttModelError, match=r"speech\.pocketsphinx_model"):
        PocketsphinxEngine(model=str(tmp_path))  # a directory, but no model in it


DIGITS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _say(engine: PocketsphinxEngine, file: str, repeat: tuple[int, int] | None) -> str:
    stream = engine.stream(8000, ["main menu", "talk to an agent"], sequence=DIGITS, repeat=repeat) if repeat \
        else engine.stream(8000, DIGITS)
    for f in frames(file):
        stream.feed(f)
    return stream.finish().text


def test_repeat_grammar_takes_digit_sequences(engine: PocketsphinxEngine) -> None:
    """An account number or a code is read digit by digit: a sequence of the grammar's words."""
    synthetic = [e for e in entries("phrase", "tel") if e["intent"] == "digits"]
    exact = sum(_say(engine, e["file"], (4, 4)) == e["text"] for e in synthetic)
    assert synthetic and exact >= len(synthetic) - 2, f"{exact}/{len(synthetic)}"  # 3/5 when written
    loose = [_say(engine, e["file"], (1, 8)) for e in synthetic]
    assert all(1 <= len(t.split()) <= 8 for t in loose)
    assert len(_say(engine, synthetic[0]["file"], None).split()) == 1  # without repeat: one digit


def test_money_builtin_grammar(engine: PocketsphinxEngine) -> None:
    """Amounts are said in a structure ("fifty dollars", "one thousand two hundred and five dollars"): the
    built-in money grammar produces only such amounts (or the node's phrases).

    A regression floor, not a claim of accuracy: on the five synthetic "fifty dollars" fixtures it gets the
    amount right 2 times (it hears "eighty" for "fifty" on espeak's voices) where the one-phrase grammar
    "fifty dollars" among 3 others gets 5/5: the bigger the grammar, the more pocketsphinx confuses. The safe
    path's read-back is what stands between such a mistake and a transfer."""
    from voiceivr.dialplan.slots import extract_money

    amounts = [e for e in entries("phrase", "tel") if e["intent"] == "amount"]
    right = 0
    for e in amounts:
        stream = engine.stream(8000, ["main menu", "talk to an agent"], builtin="money")
        for f in frames(e["file"]):
            stream.feed(f)
        result = stream.finish()
        assert set(result.text.split()) <= MONEY_OR_PHRASE_WORDS, result.text
        parsed = extract_money(result.text, bare_numbers=True)
        right += parsed is not None and parsed.value.cents == 5000
    assert amounts and right >= 2, f"{right}/{len(amounts)}"


MONEY_OR_PHRASE_WORDS = {"main", "menu", "talk", "to", "an", "agent"} | MONEY_WORDS



def _main_menu_grammar() -> list[str]:
    plan = load_file(ROOT / "dialplans" / "bank.yaml", demo_registry())
    node = plan.nodes["main_menu"]
    intents = [plan.intents[r.intent] for r in node.routes] + list(plan.globals.values())
    return list(dict.fromkeys(p for i in intents for p in (*i.examples, *i.keywords)))


def test_a_pooled_decoder_forgets_the_last_utterance(engine: PocketsphinxEngine) -> None:
    """A turn decodes the same whichever turn used the pooled decoder before it. The captured turn is what a
    live server fed its recogniser for "check my balance" (espeak-us fixture over pjsua2 and G.711, with the
    pre-roll): a decoder that had heard another call first took it for "get me a" and sent the caller to an
    agent, while a fresh one heard "balance"."""
    grammar = _main_menu_grammar()
    turn = "captured/check_balance_live_turn.wav"
    first = recognise(engine, turn, grammar)[:2]
    for other in ("phrases/goodbye__espeak-us__tel.wav", "phrases/transfer__espeak-gb__tel.wav"):
        recognise(engine, other, grammar)
        assert recognise(engine, turn, grammar)[:2] == first
    assert "balance" in first[0]


def test_grammar_decoders_load_no_language_model(engine: PocketsphinxEngine) -> None:
    """Left unset, pocketsphinx loads its default language model into every decoder (+60 MB each, unused)."""
    decoder = engine._new_decoder("grammar").decoder
    assert decoder.config["lm"] is None and decoder.config["bestpath"] is False


def test_confidence_rejects_out_of_grammar_human_speech_and_accepts_grammar_phrases(
    engine: PocketsphinxEngine,
) -> None:
    """The grammar puts a phrase on almost anything; the score against the phone loop says when it is forced.
    Measured at the time of writing: 19 of 20 real human recordings of other things (LibriVox readings, ALSA
    channel names, card names, digits) under routing.speech_accept, 69 of 80 telephone phrases over it; with the
    read-back's larger yes/no grammar (the pairs callers make: "yeah go ahead", "no thanks"...) 17 of 20."""
    accept = Routing().speech_accept
    phrases = grammar_phrases()
    human = sorted(p.name for p in (ROOT / "tests" / "fixtures" / "audio" / "human").glob("*.wav"))
    assert len(human) == 20
    kept_out = sum(recognise(engine, f"human/{h}", phrases)[1] < accept for h in human)
    assert kept_out >= 16, kept_out
    cases = [e for e in entries("phrase", "tel") if e["intent"] != "long"]
    results = [(e, recognise(engine, e["file"], phrases)) for e in cases]
    accepted = [(e, text) for e, (text, confidence, _) in results if confidence >= accept]
    assert len(accepted) >= 60, len(accepted)
    assert all(text == e["text"] for e, text in accepted)  # what passes is right


def test_score_and_calibration(engine: PocketsphinxEngine) -> None:
    stream = engine.stream(8000, grammar_phrases())
    for frame in frames("human/librivox_0870.wav"):
        stream.feed(frame)
    result = stream.finish()
    assert result.score is not None and result.confidence == pytest.approx(calibrated(result.score))
    assert calibrated(-1e9) == pytest.approx(0.0) and calibrated(1e9) == pytest.approx(1.0)
    scores = np.linspace(-30, 10, 41)
    assert np.all(np.diff([calibrated(s) for s in scores]) > 0)  # a better fit is never less confident
    a, b = CALIBRATION
    assert calibrated(-b / a) == pytest.approx(0.5)
    assert engine.calibration == calibration_for(PHONE_LOOP_BEAM) == CALIBRATION
    assert all(calibration_for(beam * 3) == fit for beam, fit in CALIBRATIONS.items())  # an unfitted beam: nearest


def test_scoring_off_gives_the_fixed_confidence(engine: PocketsphinxEngine) -> None:
    plain = PocketsphinxEngine(score_grammar_results=False)
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "check_balance" and "piper" in x["voice"])
    stream = plain.stream(8000, grammar_phrases())
    for frame in frames(e["file"]):
        stream.feed(frame)
    result = stream.finish()
    assert result.text == "check my balance" and result.confidence == UNSCORED_CONFIDENCE and result.score is None


def test_the_phone_loop_beam_setting_reaches_the_scoring_decoder(engine: PocketsphinxEngine) -> None:
    from dataclasses import replace

    from voiceivr.settings import Settings
    from voiceivr.speech.registry import build_stt

    settings = Settings()
    settings = replace(settings, speech=replace(settings.speech, pocketsphinx_phone_beam=1e-10, open_transcript="off"))
    narrow = build_stt(settings, workers=0)
    assert isinstance(narrow, PocketsphinxEngine) and narrow.phone_loop_beam == 1e-10
    assert narrow.calibration == calibration_for(1e-10)
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "check_balance" and "piper" in x["voice"])
    scores = []
    for eng in (engine, narrow):
        stream = eng.stream(8000, grammar_phrases())
        for frame in frames(e["file"]):
            stream.feed(frame)
        result = stream.finish()
        assert result.text == "check my balance" and result.score is not None
        scores.append(result.score)
    # the same grammar path against a differently pruned phone loop (not monotone in the beam: 7.9 at 1e-15,
    # 2.6 at 1e-10 here, as measured)
    assert scores[0] != pytest.approx(scores[1], abs=0.1)
