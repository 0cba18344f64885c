"""Phrases to grammars: normalisation, numbers, acronyms, unknown words."""

from __future__ import annotations

import pytest

from voiceivr.speech.stt.grammar import GrammarError, check_vocabulary, normalize, number_words, to_jsgf


def test_normalize_spells_numbers_and_drops_punctuation() -> None:
    assert normalize("Transfer $50, please!") == ["transfer", "fifty", "dollars", "please"]
    assert normalize("I'd like 1,250 & more") == ["i'd", "like", "one", "thousand", "two", "hundred", "fifty",
                                                   "and", "more"]
    assert normalize("Press 0 or #") == ["press", "zero", "or", "number"]
    assert normalize("  ") == []


def test_number_words() -> None:
    assert number_words(0) == ["zero"]
    assert number_words(19) == ["nineteen"]
    assert number_words(40) == ["forty"]
    assert number_words(2_000_013) == ["two", "million", "thirteen"]
    with pytest.raises(GrammarError):
        number_words(10**9)


def test_unknown_words_are_named_with_the_fix() -> None:
    known = {"check", "my", "balance", "use", "the", "a", "t", "m", "pay"}.__contains__
    assert check_vocabulary(["Check my balance"], known, "x") == [["check", "my", "balance"]]
    assert check_vocabulary(["use the ATM"], known, "x") == [["use", "the", "a", "t", "m"]]
    with pytest.raises(GrammarError, match="'zorblax' \\(in phrase 'pay zorblax'\\)") as err:
        check_vocabulary(["check", "pay zorblax"], known, "add {word} to speech.pocketsphinx_extra_dict")
    assert err.value.hint == "add zorblax to speech.pocketsphinx_extra_dict"
    with pytest.raises(GrammarError, match="no words"):
        check_vocabulary(["!!"], known, "x")


def test_jsgf_has_one_alternative_per_distinct_phrase() -> None:
    text = to_jsgf("turn", [["yes"], ["no"], ["yes"], ["what's", "up"]])
    assert text.startswith("#JSGF V1.0;\ngrammar turn;\n")
    assert text.count("( yes )") == 1 and "( what's up )" in text
    with pytest.raises(GrammarError):
        to_jsgf("turn", [['"quoted"']])
    with pytest.raises(GrammarError):
        to_jsgf("bad name", [["yes"]])


def test_repeat_grammar_spells_out_the_range() -> None:
    from voiceivr.speech.stt.grammar import to_jsgf

    text = to_jsgf("turn", [["one"], ["two"]], repeat=(2, 4))
    assert "public <utterance> = <one> <one> [<one> [<one>]];" in text
    assert "public <utterance> = <one>;" in to_jsgf("t", [["one"]], repeat=(1, 1))
    with pytest.raises(GrammarError):
        to_jsgf("t", [["one"]], repeat=(3, 2))
    mixed = to_jsgf("t", [["main", "menu"]], repeat=(2, 3), sequence=["one", "two"])
    assert "<w> = one | two;" in mixed and "public <utterance> = ( <w> <w> [<w>] ) | <phrase>;" in mixed
    with pytest.raises(GrammarError, match="repeat"):
        to_jsgf("t", [], sequence=["one"])


def test_whole_utterances_of_a_grammar() -> None:
    from voiceivr.speech.stt.grammar import accepts

    assert accepts("main menu", ["main menu"], ["one", "two"], (2, 3))
    assert accepts("one two one", ["main menu"], ["one", "two"], (2, 3))
    assert not accepts("one", ["main menu"], ["one", "two"], (2, 3))
    assert not accepts("one main", ["main menu"], ["one", "two"], (2, 3))


def test_money_grammar_is_structured() -> None:
    from voiceivr.speech.stt.grammar import MONEY_WORDS, accepts

    text = to_jsgf("t", [["main", "menu"]], builtin="money")
    assert "public <utterance> = <money> | <phrase>;" in text and "<below100> =" in text
    assert {"fifty", "dollars", "cents", "hundred"} <= MONEY_WORDS and "menu" not in MONEY_WORDS
    assert accepts("fifty dollars", [], [], None, "money")
    assert not accepts("fifty and", [], [], None, "money")
    with pytest.raises(GrammarError, match="no built-in grammar"):
        to_jsgf("t", [["x"]], builtin="euros")


def test_money_grammar_takes_hundreds_as_callers_say_them_and_cents_with_their_word() -> None:
    from voiceivr.speech.stt.grammar import accepts

    rules = to_jsgf("t", [], builtin="money")
    assert "<hundreds> = (<teen> | <tens> <digit>) hundred" in rules  # "fifteen hundred", never "fifty hundred"
    assert "<cents> = <below100> (cents | cent);" in rules and "bucks" in rules
    for text in ("fifteen hundred dollars", "a hundred and twenty dollars fifty cents", "seventy five bucks"):
        assert accepts(text, [], [], None, "money"), text


def test_digit_grammar_counts_digits_not_words() -> None:
    from voiceivr.speech.stt.grammar import DIGIT_WORDS, accepts, builtin_words, digits_grammar, spoken_digit_count

    assert digits_grammar(8, 8) == "digits:8" and digits_grammar(4, 6) == "digits:4-6"
    rules = to_jsgf("t", [["talk", "to", "an", "agent"]], builtin="digits:4")
    assert "<n4> = <two> <two>;" in rules and "<two> = <d> <d> | <teen> | <tens> [<nz>] | double <d>;" in rules
    assert "public <utterance> = <digits> | <phrase>;" in rules and "<leadin> =" in rules
    odd = to_jsgf("t", [], builtin="digits:3-5")
    assert "<n3> = <d> <two> | <two> <d>;" in odd and "(<n3> | <n4> | <n5>)" in odd
    for text, count in (("twelve thirty four", 4), ("my pin is four three two one", 4), ("double five", 2),
                        ("forty two forty two", 4), ("one two three four five six seven eight", 8),
                        ("forty", 2), ("pin is four", None), ("four my pin is", None), ("double", None)):
        assert spoken_digit_count(text.split()) == count, text
    assert accepts("twelve thirty four", [], [], None, "digits:4")
    assert not accepts("one two three", [], [], None, "digits:4")
    assert accepts("talk to an agent", ["talk to an agent"], [], None, "digits:4")
    assert {"twelve", "double", "oh", "ends"} <= DIGIT_WORDS and builtin_words("digits:8") == DIGIT_WORDS
    for bad in ("digits:0", "digits:5-3", "digits:25", "digits", "euros"):
        with pytest.raises(GrammarError):
            to_jsgf("t", [["x"]], builtin=bad)


def test_a_long_digit_grammar_stays_small() -> None:
    """Pairs are aligned: a free mix of pairs and single digits grew as 1.8^length (16 digits: 44 s to compile)."""
    rules = to_jsgf("t", [], builtin="digits:1-24")
    assert len(rules) < 10_000, len(rules)
