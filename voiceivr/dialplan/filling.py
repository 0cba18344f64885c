"""Slot filling: typed values from the caller's words or keys, checked before anything uses them.

The answer to the slot being asked, and the other missing slots of the node filled from the same utterance
("transfer fifty dollars to savings"), with the cue words that tell two choice slots apart; free text and
addresses are checked here, before any read-back.
"""

from __future__ import annotations

from typing import Any

from voiceivr.dialplan.context import SlotFill
from voiceivr.dialplan.freetext import check_address, check_text, extract_address
from voiceivr.dialplan.io import Utterance
from voiceivr.dialplan.listening import Listening
from voiceivr.dialplan.model import Node, SlotSpec
from voiceivr.dialplan.second_opinion import READ_TYPES, reconcile
from voiceivr.dialplan.slots import (
    FREE_TEXT_TYPES,
    Money,
    Parsed,
    all_choices,
    extract_choice,
    extract_date,
    extract_digits,
    extract_money,
    extract_text,
    parse_yesno,
)


class SlotFilling(Listening):
    """Parsing, validating and recording slot values."""

    # === slots ============================================================================================

    def _slot_text(self, u: Utterance) -> None:
        assert self.slot is not None
        spec = self.plan.slots[self.slot]
        node = self.plan.node(self.node_id)
        # Globals first when they are unmistakable (tiers 0-1), so "agent" is never read as free text.
        g = self._route_globals(u.text, cheap_only=True, recognition=self._recognition(u))
        if g is not None:
            self._global(g.intent or "", g)
            return
        unsure = u.kind != "dtmf" and u.confidence < self.plan.routing.slot_min_confidence
        said = u.text
        parsed = self._asked_answer(spec, u.text, node)
        if u.kind == "speech" and u.open_text and spec.type in READ_TYPES and not spec.secret:
            # The grammar was unsure and the recogniser transcribed the turn again: read both (second_opinion.py).
            reading = reconcile(spec.type, parsed, self._asked_answer(spec, u.open_text, node), u.open_text)
            self._event("second_opinion", slot=spec.name, verdict=reading.verdict)
            if reading.verdict == "disagree":
                self._event("slot_rejected", slot=spec.name, reason="the open transcript heard another value",
                            confidence=round(u.confidence, 3))
                self._no_match("recognisers disagree")
                return
            unsure = unsure and reading.verdict in ("grammar", "none")
            parsed = reading.parsed
            said = "" if reading.verdict == "open" else u.text  # Whisper alone fills no other slot (no numbers)
        if unsure:
            self._event("slot_rejected", slot=spec.name, reason="low recognition confidence",
                        confidence=round(u.confidence, 3))
            self._no_match("recognition not confident")
            return
        problem = self._free_text_problem(spec, parsed.value) if parsed is not None else None
        if problem is not None:
            # Refused before any read-back: the caller is asked again (and the gate would refuse it anyway).
            self._event("slot_rejected", slot=spec.name, reason=problem)
            self._no_match(f"{spec.type} refused",
                           message=self.plan.messages.invalid_address if spec.type == "address"
                           else self.plan.messages.invalid_text)
            return
        # (a free-text answer was just checked: no second scan)
        if parsed is not None and (spec.type in FREE_TEXT_TYPES or self._valid(spec, parsed.value)):
            self._set_slot(spec, parsed.value, u.kind)
            if said:
                self._fill_from(said, node, asked=spec.name, taken_at=parsed.start)
            self.no_match_count = self.no_input_count = 0
            self._enter_continue()
            return
        if parsed is not None:
            self._invalid_value(spec)
            return
        g = self._route_globals(u.text, cheap_only=False, recognition=self._recognition(u))
        if g is not None:
            self._global(g.intent or "", g)
            return
        self._no_match(f"no {spec.type} heard")

    def _slot_filled(self, spec: SlotSpec, value: Any, source: str) -> None:
        if not self._valid(spec, value):
            self._invalid_value(spec)
            return
        self._set_slot(spec, value, source)
        self.no_match_count = self.no_input_count = 0
        self._enter_continue()

    def _asked_answer(self, spec: SlotSpec, text: str, node: Node) -> Parsed | None:
        """The answer to the slot's own question in ``text`` (None: no value of its type)."""
        if spec.type == "choice":
            return self._asked_choice(spec, text, node)
        return self._parse_slot(spec, text, asked=True)

    def _parse_slot(self, spec: SlotSpec, text: str, asked: bool, bare_numbers: bool = True) -> Parsed | None:
        if spec.type == "money":
            return extract_money(text, bare_numbers=asked or bare_numbers)
        if spec.type == "digits":
            return extract_digits(text, spec.min_length, spec.max_length)
        if spec.type == "yesno":
            return parse_yesno(text)
        if spec.type == "date":
            return extract_date(text, self.today, spec.prefer)
        if spec.type == "choice":
            return extract_choice(text, spec.options)
        if spec.type == "text":
            return extract_text(text) if asked else None
        if spec.type == "address":
            return extract_address(text) if asked else None
        return None

    def _fill_from(self, text: str, node: Node, asked: str | None, bare_numbers: bool = False,
                   taken_at: int | None = None) -> list[str]:
        """Fill the node's other missing slots from one utterance ("transfer fifty dollars to savings")."""
        filled = []
        taken: set[tuple[str, int]] = set()
        if asked is not None and taken_at is not None:
            taken.add((self.plan.slots[asked].type, taken_at))
        for s in node.collect:
            if s == asked or (s in self.slots and self.slots[s].source != "default"):
                continue
            spec = self.plan.slots[s]
            if spec.type in FREE_TEXT_TYPES:  # only ever the answer to its own question
                continue
            parsed = self._parse_for_cues(spec, text, bare_numbers, taken, node)
            if parsed is not None and self._valid(spec, parsed.value):
                taken.add((spec.type, parsed.start))
                self._set_slot(spec, parsed.value, "speech")
                filled.append(s)
        return filled

    def _asked_choice(self, spec: SlotSpec, text: str, node: Node) -> Parsed | None:
        """The answer to "which X?": the option after one of X's cues if there is one ("from checking to
        savings" answers "to" with savings), else the first option not introduced by another slot's cue."""
        hits = all_choices(text, spec.options)
        other_cues = {c for s in node.collect if s != spec.name for c in self.plan.slots[s].cues} - set(spec.cues)
        for hit in hits:
            if hit.cue in spec.cues:
                return hit
        for hit in hits:
            if hit.cue not in other_cues:
                return hit
        return None

    def _parse_for_cues(self, spec: SlotSpec, text: str, bare: bool, taken: set[tuple[str, int]],
                        node: Node) -> Parsed | None:
        if spec.type != "choice":
            got = self._parse_slot(spec, text, asked=False, bare_numbers=bare)
            if spec.type == "money" and got is None and bare:
                got = extract_money(text, bare_numbers=True)
            return got
        # Several choice slots may share words ("checking"): a value goes to the slot whose cue word precedes
        # it ("from savings", "to checking"); a value without a known cue goes to the first slot that takes it.
        all_cues = {c for s in node.collect for c in self.plan.slots[s].cues}
        for hit in all_choices(text, spec.options):
            if ("choice", hit.start) in taken:
                continue
            if (hit.cue in spec.cues) if spec.cues else (hit.cue not in all_cues):
                return hit
        return None

    def _slot_from_dtmf(self, spec: SlotSpec, digits: str) -> Any:
        if spec.type == "digits":
            return digits if digits.isdigit() and spec.min_length <= len(digits) <= spec.max_length else None
        if spec.type == "money":
            return Money(int(digits)) if digits.isdigit() else None  # keyed in cents (the prompt says so)
        if spec.type == "yesno":
            return {"1": True, "2": False}.get(digits)
        if spec.type == "choice":
            return next((o.key for o in spec.options if o.dtmf == digits), None)
        return None

    def _valid(self, spec: SlotSpec, value: Any) -> bool:
        if spec.type == "money":
            assert isinstance(value, Money)
            if spec.min_amount and value < spec.min_amount:
                return False
            if spec.max_amount and value > spec.max_amount:
                return False
        if spec.type == "digits":
            return isinstance(value, str) and spec.min_length <= len(value) <= spec.max_length
        if spec.type in FREE_TEXT_TYPES:
            return self._free_text_problem(spec, value) is None
        return True

    def _free_text_problem(self, spec: SlotSpec, value: Any) -> str | None:
        """Why a text or address answer is refused: too long, flagged, not an address (no words of it)."""
        if spec.type == "address":
            return check_address(str(value), spec.max_chars)
        if spec.type == "text":
            return check_text(str(value), spec.max_chars)
        return None

    def _invalid_value(self, spec: SlotSpec) -> None:
        if spec.type == "money" and spec.min_amount and spec.max_amount:
            msg = f"The amount must be between {spec.min_amount.spoken()} and {spec.max_amount.spoken()}."
        elif spec.type == "digits":
            n = spec.min_length if spec.min_length == spec.max_length else f"{spec.min_length} to {spec.max_length}"
            msg = f"That should be {n} digits."
        else:
            msg = self.plan.messages.reprompt
        self._event("slot_rejected", slot=spec.name, reason="out of range")
        self._no_match("value out of range", message=msg)

    def _set_slot(self, spec: SlotSpec, value: Any, source: str) -> None:
        flags = () if source == "default" else self._input_flags
        self.slots[spec.name] = SlotFill(value, confirmed=False, source=source, flagged=flags)
        self._event("slot", slot=spec.name, type=spec.type, value=self._shown_value(spec.name, value), source=source)
