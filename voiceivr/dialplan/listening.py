"""What the engine listens for next, and what it does when it hears nothing it can use.

Builds the :class:`~voiceivr.dialplan.io.Listen` for the phase the call is in (the intents of a menu node, a
slot's grammar, the confirm answers, the channel choice, the code), and the fallbacks when the caller gives no
usable answer: reprompt, name the options, offer the keypad menu once, then an agent or goodbye.
"""

from __future__ import annotations

from collections.abc import Sequence

from voiceivr.dialplan.context import CallContext
from voiceivr.dialplan.io import DtmfSpec, Listen, Transfer
from voiceivr.dialplan.model import Node, PromptSpec, SlotSpec
from voiceivr.policy.confirm import grammar_phrases
from voiceivr.speech.stt.grammar import digits_grammar

MAX_SPOKEN_RUN = 24  # longest run of words a recogniser grammar spells out (card numbers are 16-19 digits)


class Listening(CallContext):
    """Grammars and DTMF specs per phase; retries and the way out when they are used up."""

    # === listening ========================================================================================

    def _relisten(self, keep_prompts: bool = False) -> None:
        if self.phase == "menu":
            self._listen_for_intents(self.plan.node(self.node_id), keep_prompts)
        elif self.phase == "slot" and self.slot is not None:
            spec = self.plan.slots[self.slot]
            if not keep_prompts and not any(s.kind == "menu" for s in self._say):
                self._prompt(spec.ask, "reprompt")
            self._listen_for_slot(spec)
        elif self.phase == "confirm":
            self._listen_confirm()
        elif self.phase == "channel":
            self._listen_simple("channel", ("text", "app"), max_digits=1)
        elif self.phase == "code":
            self._listen_code()

    def _listen_for_intents(self, node: Node, keep_prompts: bool = False) -> None:
        phrases: list[str] = []
        for r in node.routes:
            i = self.plan.intents[r.intent]
            phrases += [*i.examples, *i.keywords]
        for g in self.plan.globals.values():
            phrases += [*g.examples, *g.keywords]
        if (self.no_match_count or self.no_input_count) and not keep_prompts \
                and not any(s.kind in ("menu",) for s in self._say) and not self._say_has_node_prompt(node):
            for p in node.say:
                self._prompt(p, "reprompt")
        self._listen = Listen("intent", _dedup(phrases), DtmfSpec(1, None, node.fallback.inter_digit_timeout_s),
                              node.fallback.timeout_s)

    def _say_has_node_prompt(self, node: Node) -> bool:
        texts = {self._render(p.text) for p in node.say}
        return any(s.text in texts for s in self._say)

    def _listen_for_slot(self, spec: SlotSpec) -> None:
        fb = self._fallback()
        grammar: tuple[str, ...] = ()
        sequence: tuple[str, ...] = ()
        repeat: tuple[int, int] | None = None
        builtin: str | None = None
        dtmf = DtmfSpec(1, None, fb.inter_digit_timeout_s)
        if spec.type == "digits":
            # counted in digits, pairs included ("twelve thirty four"): a free run of digit words inserted and
            # dropped digits and had no grouped forms (dev, clean, whole clips offline: 17 of 48 right; with it 22)
            builtin = digits_grammar(min(spec.min_length, MAX_SPOKEN_RUN), min(spec.max_length, MAX_SPOKEN_RUN))
            dtmf = DtmfSpec(spec.max_length, "#", fb.inter_digit_timeout_s)
        elif spec.type == "money":
            builtin = "money"
            dtmf = DtmfSpec(9, "#", fb.inter_digit_timeout_s)
        elif spec.type == "yesno":
            grammar = grammar_phrases()
        elif spec.type == "choice":
            grammar = self._choice_phrases(spec)
        globals_ = [p for g in self.plan.globals.values() for p in (*g.examples, *g.keywords)]
        if spec.type == "yesno":
            globals_ = self._answer_globals()
        if grammar or sequence or builtin:
            grammar = _dedup([*grammar, *globals_])
        self._listen = Listen(f"slot:{spec.name}", grammar, dtmf, fb.timeout_s, sequence, repeat, builtin,
                              secret=spec.secret)

    def _choice_phrases(self, spec: SlotSpec) -> tuple[str, ...]:
        """What a caller says for a choice: an option, an option after one of its cues ("to savings"), and, for
        the other choice slots of the node that have cues, both in one breath ("from checking to savings")."""

        # The grammar's size is what a grammar recogniser pays for on every frame (855 phrases decoded at 0.3x
        # real time): synonyms stand alone, but only an option's first two names take a cue, and only its
        # first name goes into the two-slot sentences.
        def cued(s: SlotSpec, names: int) -> list[str]:
            return [f"{c} {w}" for c in s.cues for o in s.options for w in o.synonyms[:names]]

        phrases = [f for o in spec.options for w in o.synonyms for f in _carried(w)] + cued(spec, 2)
        node = self.plan.node(self.node_id)
        others = [self.plan.slots[n] for n in node.collect
                  if n != spec.name and n in self.plan.slots and self.plan.slots[n].type == "choice"
                  and self.plan.slots[n].cues]
        if spec.cues:
            for other in others:
                for mine in cued(spec, 1):
                    for theirs in cued(other, 1):
                        phrases += [f"{mine} {theirs}", f"{theirs} {mine}"]
        return _dedup(phrases)

    def _answer_globals(self) -> list[str]:
        """The globals a yes/no question still listens for: only the way to a person. The others ("go back",
        "that's all", "repeat that") sound like short answers and took them: at the read-back "no" came back as
        *go back* or *that's all* (understanding evaluation, dev, clean: 3 of 33 answers, with the answer pairs of
        policy/confirm.py in the grammar; 0 without those globals). They stay on the keypad."""
        agent = self.plan.globals.get("agent")
        return [*agent.examples, *agent.keywords] if agent else []

    def _listen_confirm(self) -> None:
        fb = self._fallback()
        self._listen = Listen("confirm", _dedup([*grammar_phrases(), *self._answer_globals()]),
                              DtmfSpec(1, None, fb.inter_digit_timeout_s), fb.timeout_s)

    def _listen_code(self) -> None:
        fb = self._fallback()
        globals_ = [p for g in self.plan.globals.values() for p in (*g.examples, *g.keywords)]
        lo, hi = min(self.options.code_min_digits, MAX_SPOKEN_RUN), min(self.options.code_max_digits, MAX_SPOKEN_RUN)
        # the digit grammar of a digits slot: a spoken code is never heard with a digit too many or too few
        self._listen = Listen("code", _dedup(globals_),
                              DtmfSpec(self.options.code_max_digits, "#", fb.inter_digit_timeout_s), fb.timeout_s * 2,
                              builtin=digits_grammar(lo, hi), secret=True)

    def _listen_simple(self, expect: str, grammar: Sequence[str], max_digits: int) -> None:
        fb = self._fallback()
        self._listen = Listen(expect, tuple(grammar), DtmfSpec(max_digits, None, fb.inter_digit_timeout_s),
                              fb.timeout_s)

    # === fallbacks ========================================================================================

    def _no_match(self, why: str, message: str | None = None) -> None:
        self.no_match_count += 1
        self._event("no_match", reason=why, count=self.no_match_count)
        fb = self._fallback()
        if self.no_match_count <= fb.no_match:
            clarify = self._clarifying_prompt() if message is None else None
            if clarify is not None:
                self._prompt(clarify, "reprompt")
                self._relisten(keep_prompts=True)
                return
            self._prompt(message or self.plan.messages.reprompt, "reprompt")
            self._relisten()
        else:
            self._escalate("no match")

    def _clarifying_prompt(self) -> str | None:
        """What the caller can say here, named: the menu's tasks by their labels, or a choice slot's options.
        None where there is no short list to name (a number, a date, free text): the plain reprompt is better."""
        if self.phase == "menu":
            node = self.plan.node(self.node_id)
            labels = [self.plan.intents[r.intent].label or r.intent.replace("_", " ") for r in node.routes]
            template = self.plan.messages.clarify
        elif self.phase == "slot" and self.slot is not None and self.plan.slots[self.slot].type == "choice":
            labels = [o.say or o.key for o in self.plan.slots[self.slot].options]
            template = self.plan.messages.clarify_choice
        else:
            return None
        labels = list(dict.fromkeys(x for x in labels if x))
        if not labels:
            return None
        options = " or ".join(labels) if len(labels) <= 2 else f"{', '.join(labels[:-1])}, or {labels[-1]}"
        return self._render(template, {"options": options})

    def _escalate(self, why: str) -> None:
        """Retries are used up: offer the keypad (once), then an agent (or goodbye)."""
        fb = self._fallback()
        if fb.dtmf_menu and not self.menu_offered:
            self.menu_offered = True
            if self.phase == "menu":
                menu = self._dtmf_menu()
                if menu:
                    self._event("fallback", to="dtmf_menu", reason=why)
                    self._prompt_say(menu, "menu")
                    self._relisten()
                    return
            elif self.phase == "slot" and self.slot is not None:
                spec = self.plan.slots[self.slot]
                keyed = spec.keyed.text if spec.keyed else (
                    self.plan.messages.keyed_digits if spec.type in ("digits", "money") else self._options_menu(spec))
                if keyed:
                    self._event("fallback", to="dtmf_menu", reason=why)
                    self._prompt(PromptSpec(keyed, kind="menu"))
                    self._relisten()
                    return
        self._event("fallback", to=fb.then, reason=why)
        if fb.then == "agent" and self.plan.agent_target:
            self._to_agent(f"fallback: {why}")
        else:
            self._goodbye(f"fallback: {why}")

    def _dtmf_menu(self) -> str:
        node = self.plan.node(self.node_id)
        if node.menu is not None:
            return self._render(node.menu.text)
        parts = [f"For {self.plan.intents[r.intent].label}, press {_key_name(r.dtmf)}."
                 for r in node.routes if r.dtmf]
        agent = self.plan.globals.get("agent")
        if agent and agent.dtmf:
            parts.append(f"To speak to an agent, press {_key_name(agent.dtmf)}.")
        return " ".join(parts)

    def _options_menu(self, spec: SlotSpec) -> str:
        return " ".join(f"For {o.say or o.key}, press {_key_name(o.dtmf)}." for o in spec.options if o.dtmf)

    def _to_agent(self, reason: str) -> None:
        self._abandon("transferred to an agent")
        self._prompt(self.plan.messages.agent, "info")
        self._transfer = Transfer(self.plan.agent_target, reason)
        self._event("transfer", target=self.plan.agent_target, reason=reason)
        self.phase = "ended"
        self._listen = None

    def _goodbye(self, reason: str) -> None:
        self._abandon("call ended")
        self._prompt(self.plan.messages.goodbye, "goodbye")
        self._hangup = True
        self._event("hangup", by="agent", reason=reason)
        self.phase = "ended"
        self._listen = None


_CARRIERS = (("my ", ""), ("the ", ""), ("", " please"), ("my ", " please"), ("the ", " please"))


def _carried(option: str) -> list[str]:
    """An option as callers answer with it: "savings", "my savings", "the savings please". Without these words in
    the grammar, "savings please" came back as the global "can you repeat that" and "my checking account" as "what
    did you say" (understanding evaluation, dev, clean: 11 of 15 account choices right; with them 15 of 15)."""
    if option.split()[0] in ("my", "the", "your", "a", "an"):
        return [option, f"{option} please"]
    return [option, *(f"{before}{option}{after}" for before, after in _CARRIERS)]


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i.lower() for i in items if i))


def _key_name(key: str | None) -> str:
    return {"*": "star", "#": "pound"}.get(key or "", key or "")
