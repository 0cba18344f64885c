"""Secret inputs a recording does not hold, and the operator's values for them (``voiceivr replay --secret``).

A recording pauses while the caller gives a secret (docs/recordings.md): key presses are written without their
digit, and the caller's audio over each paused span (``secret_spans``) is silence. A replay cannot know what was
given. It says so and runs anyway -- the replayed call then goes wherever a missing PIN leads -- and, given the
values with ``--secret`` (once per input, in the order the caller gave them), puts them back:

* a keyed input: each masked key press gets the next key of the values, at its recorded time;
* a spoken input (a paused span with no key press in it): the value is keyed instead, one key every
  :data:`KEY_GAP_S` and a ``#``, from :data:`ANSWER_AFTER_S` after the agent fell silent in the span. The caller
  spoke some time after that; the replay answers as soon as it may, so the rest of the call comes a little early.

The values never reach any output: the replayed session masks them as the live one did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm
from voiceivr.call import events as ev

KEY_GAP_S = 0.1
ANSWER_AFTER_S = 0.3
KEYS = frozenset("0123456789ABCD")
_QUIET = 64  # an agent frame whose samples all stay under this is silence (G.711 leaves a few LSBs)


@dataclass(frozen=True)
class MaskedInput:
    """One secret input of the recording: masked key presses, or a paused span with none (spoken)."""

    start: float
    end: float
    keys: tuple[float, ...] = ()  # when each masked key was pressed; empty: the input was spoken

    def describe(self) -> str:
        if self.keys:
            return f"{len(self.keys)} key{'s' if len(self.keys) > 1 else ''} at {self.start:.2f} s"
        return f"spoken at {self.start:.2f}-{self.end:.2f} s"

    def to_json(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "keys": len(self.keys),
                "spoken": not self.keys}


def masked_inputs(doc: Mapping[str, Any]) -> list[MaskedInput]:
    """The secret inputs of a recording's JSON, in call order. Masked keys in a row are one input until a key in
    clear (a #) or the end of their paused span; a paused span without any is a spoken input."""
    spans = _spans(doc.get("secret_spans", []))

    def span_of(t: float) -> int | None:
        return next((i for i, (a, b) in enumerate(spans) if a <= t <= b), None)

    inputs: list[MaskedInput] = []
    run: list[float] = []
    run_span: int | None = None
    keyed_spans: set[int] = set()

    def close() -> None:
        if run:
            inputs.append(MaskedInput(run[0], run[-1], tuple(run)))
            run.clear()

    for e in doc.get("events", []):
        if not isinstance(e, Mapping) or e.get("type") != "dtmf":
            continue
        if not e.get("secret"):
            close()
            continue
        t = float(e.get("t", 0.0))
        span = span_of(t)
        if run and span != run_span:
            close()
        run.append(t)
        run_span = span
        if span is not None:
            keyed_spans.add(span)
    close()
    inputs += [MaskedInput(a, b) for i, (a, b) in enumerate(spans) if i not in keyed_spans]
    return sorted(inputs, key=lambda m: m.start)


def _spans(raw: Any) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise ValueError("secret_spans must be a list of [start, end] pairs")
    out = []
    for pair in raw:
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair) or pair[0] > pair[1]):
            raise ValueError(f"secret_spans holds {pair!r}; each must be [start, end] in seconds")
        out.append((float(pair[0]), float(pair[1])))
    return out


def supply(masked: Sequence[MaskedInput], values: Sequence[str], agent: Pcm | None,
           rate: int) -> tuple[list[tuple[float, ev.SystemEvent]], int]:
    """Key presses that put ``values`` back, one value per input in order (a keyed input may take several values
    if the caller keyed two entries with no # between them), and how many inputs they fill. Raises ValueError,
    without echoing a value, if they do not fit. Inputs left without a value stay out of the replay."""
    for n, value in enumerate(values, 1):
        if not value or not set(value) <= KEYS:
            raise ValueError(f"--secret value {n} is not a run of keys (0-9, A-D)")
    left = list(values)
    out: list[tuple[float, ev.SystemEvent]] = []
    filled = 0
    for n, m in enumerate(masked, 1):
        if not left:
            break
        filled = n
        if m.keys:
            keys = ""
            while len(keys) < len(m.keys) and left:
                keys += left.pop(0)
            if len(keys) != len(m.keys):
                raise ValueError(f"secret input {n} was {len(m.keys)} key presses; the --secret values given for it "
                                 f"hold {len(keys)} keys")
            out += [(t, ev.DtmfDigit(t, digit=k, method="replay")) for t, k in zip(m.keys, keys, strict=True)]
        else:
            first = _answer_time(m, agent, rate)
            out += [(first + i * KEY_GAP_S, ev.DtmfDigit(first + i * KEY_GAP_S, digit=k, method="replay"))
                    for i, k in enumerate(left.pop(0) + "#")]
    if left:
        raise ValueError(f"more --secret values than the recording's {len(masked)} secret inputs need")
    return out, filled


def _answer_time(m: MaskedInput, agent: Pcm | None, rate: int) -> float:
    """Just after the agent's last sound in the span: the question (or its repeat) the caller answered."""
    if agent is None:
        return m.start + ANSWER_AFTER_S
    n = rate * FRAME_MS // 1000
    a, z = int(m.start * 1000 / FRAME_MS), min(int(m.end * 1000 / FRAME_MS), len(agent) // n)
    loud = [i for i in range(a, z) if int(np.abs(agent[i * n:(i + 1) * n].astype(np.int32)).max()) >= _QUIET]
    return max(m.start, ((loud[-1] + 1) * FRAME_MS / 1000 if loud else m.start) + ANSWER_AFTER_S)


def note(masked: Sequence[MaskedInput], supplied: int) -> str:
    """What the operator must know about a replay of a recording with secret inputs ('' if it has none)."""
    if not masked:
        return ""
    count = f"{len(masked)} secret input{'s were' if len(masked) > 1 else ' was'} masked in this recording"
    if supplied >= len(masked):
        return f"{count}; replayed with the values given by --secret (spoken ones as keys)"
    which = "; ".join(m.describe() for m in masked[supplied:])
    given = f"--secret gave {supplied}; " if supplied else ""
    return (f"{count} ({which}); {given}the replay runs without {'them' if supplied == 0 else 'the rest'}. Supply "
            "them with --secret VALUE, once per input in order (spoken ones are keyed), to reproduce the call")
