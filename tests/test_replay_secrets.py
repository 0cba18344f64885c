"""What a replay makes of a paused recording: which secret inputs it lacks, and the operator's values put back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voiceivr.audio.wav import write_wav
from voiceivr.call import events as ev
from voiceivr.replay import ReplayInputError, load_call
from voiceivr.replay_secrets import ANSWER_AFTER_S, KEY_GAP_S, MaskedInput, masked_inputs, note, supply


def key(t: float, digit: str | None = None) -> dict[str, object]:
    base: dict[str, object] = {"t": t, "type": "dtmf", "method": "rfc4733"}
    return {**base, "digit": digit} if digit is not None else {**base, "secret": True}


DOC = {
    "events": [key(5.0, "1"), key(9.0), key(9.2), key(9.4), key(9.6), key(9.8, "#"),  # a keyed PIN, then #
               {"t": 12.0, "type": "media_moved"},
               key(30.0), key(30.2), key(33.5), key(33.7)],  # two code entries, no # between (a timeout)
    "secret_spans": [[8.0, 10.0], [14.0, 20.0], [29.0, 36.0]],  # the middle one: a code read out
}


def test_masked_inputs_are_key_runs_and_paused_spans_without_keys() -> None:
    assert masked_inputs(DOC) == [MaskedInput(9.0, 9.6, (9.0, 9.2, 9.4, 9.6)), MaskedInput(14.0, 20.0),
                                  MaskedInput(30.0, 33.7, (30.0, 30.2, 33.5, 33.7))]
    assert masked_inputs({"events": [key(1.0, "5")]}) == []  # a recording from before the pause, or without one
    for bad in ("x", [[1.0]], [[2.0, 1.0]], [["a", "b"]]):
        with pytest.raises(ValueError, match="secret_spans"):
            masked_inputs({"secret_spans": bad})


def test_the_operators_values_go_back_key_for_key_and_spoken_ones_as_keys() -> None:
    rate, n = 8000, 160
    agent = np.zeros(40 * 50 * n, dtype=np.int16)
    agent[int(14.0 * 8000):int(16.5 * 8000)] = 3000  # the code request plays 14.0-16.5 s
    keys, filled = supply(masked_inputs(DOC), ["1234", "246810", "99", "88"], agent, rate)
    assert filled == 3
    got = [(round(t, 2), e.digit) for t, e in keys if isinstance(e, ev.DtmfDigit)]
    first = 16.5 + ANSWER_AFTER_S
    spoken = [(round(first + i * KEY_GAP_S, 2), d) for i, d in enumerate("246810#")]
    assert got == [(9.0, "1"), (9.2, "2"), (9.4, "3"), (9.6, "4"), *spoken,
                   (30.0, "9"), (30.2, "9"), (33.5, "8"), (33.7, "8")]  # two entries merged: two values
    assert all(e.method == "replay" for _, e in keys)
    partial, filled = supply(masked_inputs(DOC), ["1234"], None, rate)
    assert filled == 1 and len(partial) == 4


def test_values_that_do_not_fit_are_refused_without_being_repeated() -> None:
    masked = masked_inputs(DOC)
    for values, piece in ((["12a4"], "--secret value 1 is not a run of keys"),
                          (["123"], "secret input 1 was 4 key presses; the --secret values given for it hold 3"),
                          (["1234", "1", "9988", "7"], "more --secret values than the recording's 3")):
        with pytest.raises(ValueError) as exc:
            supply(masked, values, None, 8000)
        assert piece in str(exc.value) and "12a4" not in str(exc.value)


def test_the_note_says_what_is_missing_and_how_to_supply_it() -> None:
    masked = masked_inputs(DOC)
    assert note([], 0) == ""
    text = note(masked, 0)
    assert text.startswith("3 secret inputs were masked in this recording (4 keys at 9.00 s; spoken at 14.00-20.00 s; "
                           "4 keys at 30.00 s); the replay runs without them. Supply them with --secret VALUE")
    assert "--secret gave 1; the replay runs without the rest" in note(masked, 1)
    assert note(masked, 3).endswith("replayed with the values given by --secret (spoken ones as keys)")


def test_load_call_reads_the_pauses_and_refuses_malformed_ones(tmp_path: Path) -> None:
    write_wav(tmp_path / "c.wav", np.zeros((8000, 2), dtype=np.int16), 8000)
    (tmp_path / "c.json").write_text(json.dumps({"format": "voiceivr-recording/1", "wav": "c.wav", **DOC}))
    call = load_call(tmp_path / "c.json")
    assert len(call.masked) == 3
    assert [e.digit for _, e in call.control if isinstance(e, ev.DtmfDigit)] == ["1", "#"]  # masked keys not posted
    (tmp_path / "c.json").write_text(json.dumps({"format": "voiceivr-recording/1", "wav": "c.wav",
                                                 "secret_spans": [[3, 1]]}))
    with pytest.raises(ReplayInputError, match=r"c\.json: secret_spans holds \[3, 1\]"):
        load_call(tmp_path / "c.json")
