"""The dialplan's sections other than its nodes and schedules: ``vars:``, ``routing:``, ``fallback:``,
``messages:``, ``intents:``, ``global_intents:`` and ``slots:`` (with a choice slot's options), checked
and built into :mod:`voiceivr.dialplan.model` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voiceivr.actions.address import MAX_ADDRESS_CHARS
from voiceivr.dialplan.freetext import DEFAULT_ADDRESS_CHARS, DEFAULT_TEXT_CHARS
from voiceivr.dialplan.model import (
    GLOBAL_NAMES,
    Fallback,
    GlobalIntent,
    IntentSpec,
    Messages,
    PromptSpec,
    Routing,
    SlotSpec,
)
from voiceivr.dialplan.schema import FALLBACK, GLOBAL_INTENT, INTENT, MESSAGES, OPTION, ROUTING, SLOT
from voiceivr.dialplan.slots import FREE_TEXT_TYPES, SLOT_TYPES, Money, Option, extract_money
from voiceivr.dialplan.typed import Skip, TypedReader
from voiceivr.yamlpos import MDict, MList

# Variables the engine supplies to its own messages.
MESSAGE_BUILTINS: Mapping[str, frozenset[str]] = {
    "code_sms": frozenset({"destination"}),
    "clarify": frozenset({"options"}),
    "clarify_choice": frozenset({"options"}),
}


class SectionBuilder(TypedReader):
    """Builds the dialplan-wide sections (everything but nodes: and schedules:)."""

    def build_vars(self, doc: MDict) -> dict[str, str]:
        raw = self.mapping(doc, "vars", "the dialplan")
        out: dict[str, str] = {}
        if raw is None:
            return out
        for k, v in raw.items():
            if not k.isidentifier():
                self.err(raw.key_mark(k), f"vars.{k}: a variable name is letters, digits and _")
            elif isinstance(v, MDict | MList) or v is None:
                self.err(raw.value_mark(k), f"vars.{k} must be text")
            else:
                out[k] = str(v)
        return out

    def build_routing(self, doc: MDict) -> Routing:
        raw = self.mapping(doc, "routing", "the dialplan")
        if raw is None:
            return Routing()
        names = ROUTING.names
        if "confirm_min_confidence" in raw:
            # One threshold for the engine and the gate (they disagreed: 0.5 here, 0.6 in the policy).
            self.err(raw.key_mark("confirm_min_confidence"),
                     "routing.confirm_min_confidence is no longer a dialplan setting: the policy owns it "
                     "(policy.confirm_min_confidence); remove it here")
        self.keys(raw, [*names, "confirm_min_confidence"], "routing")
        base = Routing()
        return Routing(**{n: self.number(raw, n, "routing", getattr(base, n), *ROUTING.range(n)) for n in names})

    def build_fallback(self, raw: MDict | None, where: str, base: Fallback) -> Fallback:
        if raw is None:
            return base
        self.keys(raw, FALLBACK.names, where)
        then = self.string(raw, "then", where, default=base.then) or base.then
        if then not in FALLBACK.choices("then"):
            self.err(raw.value_mark("then"), f"{where}.then must be agent or goodbye")
            then = base.then
        return Fallback(
            no_input=self.integer(raw, "no_input", where, base.no_input, *FALLBACK.range("no_input")),
            no_match=self.integer(raw, "no_match", where, base.no_match, *FALLBACK.range("no_match")),
            dtmf_menu=self.boolean(raw, "dtmf_menu", where, base.dtmf_menu),
            then=then,  # type: ignore[arg-type]
            timeout_s=self.number(raw, "timeout_s", where, base.timeout_s, *FALLBACK.range("timeout_s")),
            inter_digit_timeout_s=self.number(raw, "inter_digit_timeout_s", where, base.inter_digit_timeout_s,
                                              *FALLBACK.range("inter_digit_timeout_s")),
        )

    def build_messages(self, doc: MDict, vars_: Mapping[str, str]) -> Messages:
        raw = self.mapping(doc, "messages", "the dialplan")
        if raw is None:
            return Messages()
        names = MESSAGES.names
        self.keys(raw, names, "messages")
        values: dict[str, str] = {}
        for n in names:
            text = self.string(raw, n, "messages")
            if text is None:
                continue
            mark = raw.value_mark(n)
            self.check_braces(text, mark, f"messages.{n}")
            allowed = set(vars_) | MESSAGE_BUILTINS.get(n, frozenset())
            for var, fld in PromptSpec(text).variables():
                if var not in allowed or fld:
                    shown = f"{{{var}.{fld}}}" if fld else f"{{{var}}}"
                    self.err(self.var_mark(mark, shown), f"messages.{n} uses {shown}, which is not defined here "
                                                         f"(available: {', '.join(sorted(allowed)) or 'none'})")
            values[n] = text
        return Messages(**values)

    def build_intents(self, doc: MDict) -> dict[str, IntentSpec]:
        raw = self.mapping(doc, "intents", "the dialplan")
        out: dict[str, IntentSpec] = {}
        if raw is None:
            return out
        for name, v in raw.items():
            where = f"intents.{name}"
            if not isinstance(v, MDict):
                self.err(raw.value_mark(name), f"{where} must be a mapping with examples:")
                continue
            self.keys(v, INTENT.names, where)
            examples = self.strings(v, "examples", where)
            keywords = self.strings(v, "keywords", where)
            if name in GLOBAL_NAMES:
                self.err(raw.key_mark(name), f"{where}: {name} is a global intent; define it under global_intents:")
            out[name] = IntentSpec(
                name=name, label=self.string(v, "label", where, default=name.replace("_", " ")) or name,
                examples=examples, keywords=keywords, description=self.string(v, "description", where, default="")
                or "",
            )
        return out

    def build_globals(self, doc: MDict) -> dict[str, GlobalIntent]:
        raw = self.mapping(doc, "global_intents", "the dialplan")
        out: dict[str, GlobalIntent] = {}
        if raw is None:
            return out
        for name, v in raw.items():
            where = f"global_intents.{name}"
            if name not in GLOBAL_NAMES:
                self.err(raw.key_mark(name), f"unknown global intent {name!r}; the global intents are: "
                                             f"{', '.join(GLOBAL_NAMES)}")
                continue
            if not isinstance(v, MDict):
                self.err(raw.value_mark(name), f"{where} must be a mapping with examples:")
                continue
            self.keys(v, GLOBAL_INTENT.names, where)
            out[name] = GlobalIntent(name=name, examples=self.strings(v, "examples", where),
                                     keywords=self.strings(v, "keywords", where), dtmf=self.dtmf(v, "dtmf", where))
        return out

    def build_slots(self, doc: MDict) -> dict[str, SlotSpec]:
        raw = self.mapping(doc, "slots", "the dialplan")
        out: dict[str, SlotSpec] = {}
        if raw is None:
            return out
        for name, v in raw.items():
            try:
                out[name] = self.build_slot(name, v, raw)
            except Skip:
                pass
        return out

    def build_slot(self, name: str, v: Any, parent: MDict) -> SlotSpec:
        where = f"slots.{name}"
        v = self.named_entry(parent, name, where, "slot", "type: and ask:")
        self.keys(v, SLOT.names, where)
        stype = self.string(v, "type", where, required=True)
        if stype is None:
            raise Skip
        if stype not in SLOT_TYPES:
            self.err(v.value_mark("type"), f"{where}: unknown slot type {stype!r}; known: {', '.join(SLOT_TYPES)}")
            raise Skip
        asks = self.prompts(v, "ask", where)
        if not asks:
            self.err(v.mark, f"{where} needs ask: (what to say to ask for it)")
            raise Skip
        keyed = self.prompts(v, "keyed", where)
        min_len = self.integer(v, "min_length", where, 1, *SLOT.range("min_length"))
        max_len = self.integer(v, "max_length", where, 32, *SLOT.range("max_length"))
        if "length" in v:
            min_len = max_len = self.integer(v, "length", where, 4, *SLOT.range("length"))
        if min_len > max_len:
            self.err(v.mark, f"{where}: min_length is more than max_length")
        min_amount = self.money(v, "min", where)
        max_amount = self.money(v, "max", where)
        options = self.build_options(v, where) if stype == "choice" else ()
        if stype == "choice" and not options:
            self.err(v.mark, f"{where}: a choice slot needs options:")
        for key in ("length", "min_length", "max_length"):
            if key in v and stype != "digits":
                self.err(v.key_mark(key), f"{where}.{key} applies only to digits slots")
        for key in ("min", "max"):
            if key in v and stype != "money":
                self.err(v.key_mark(key), f"{where}.{key} applies only to money slots")
        if "options" in v and stype != "choice":
            self.err(v.key_mark("options"), f"{where}.options applies only to choice slots")
        least, most = SLOT.range("max_chars")  # declared for a text slot; an address slot takes fewer
        max_chars = self.integer(v, "max_chars", where, DEFAULT_ADDRESS_CHARS if stype == "address" else
                                 DEFAULT_TEXT_CHARS, least, MAX_ADDRESS_CHARS if stype == "address" else most)
        if "max_chars" in v and stype not in FREE_TEXT_TYPES:
            self.err(v.key_mark("max_chars"), f"{where}.max_chars applies only to text and address slots")
        default = self.string(v, "default", where)
        if default is not None and default not in {o.key for o in options}:
            self.err(v.value_mark("default"), f"{where}.default must be one of its options")
        prefer = self.string(v, "prefer", where, default="future") or "future"
        if prefer not in SLOT.choices("prefer"):
            self.err(v.value_mark("prefer"), f"{where}.prefer must be future or past")
            prefer = "future"
        return SlotSpec(
            name=name, type=stype,  # type: ignore[arg-type]
            ask=asks[0][0], keyed=keyed[0][0] if keyed else None, min_length=min_len, max_length=max_len,
            min_amount=min_amount, max_amount=max_amount, options=options,
            cues=tuple(c.lower() for c in self.strings(v, "cues", where)), default=default,
            secret=self.boolean(v, "secret", where, False), prefer=prefer,  # type: ignore[arg-type]
            max_chars=max_chars,
        )

    def money(self, v: MDict, key: str, where: str) -> Money | None:
        if key not in v:
            return None
        parsed = extract_money(str(v[key]))
        if parsed is None:
            self.err(v.value_mark(key), f"{where}.{key} must be an amount such as \"$10,000\"")
            return None
        value: Money = parsed.value
        return value

    def build_options(self, v: MDict, where: str) -> tuple[Option, ...]:
        raw = v.get("options")
        if not isinstance(raw, MDict):
            if raw is not None:
                self.err(v.value_mark("options"), f"{where}.options must be a mapping of option: synonyms")
            return ()
        out = []
        seen_dtmf: dict[str, str] = {}
        seen_syn: dict[str, str] = {}
        for key, ov in raw.items():
            w = f"{where}.options.{key}"
            say = key
            dtmf = None
            if isinstance(ov, MDict):
                self.keys(ov, OPTION.names, w)
                synonyms = self.strings(ov, "synonyms", w)
                say = self.string(ov, "say", w, default=key) or key
                dtmf = self.dtmf(ov, "dtmf", w)
                if dtmf and dtmf in seen_dtmf:
                    self.err(ov.value_mark("dtmf"), f"duplicate DTMF key {dtmf!r}: {w} and option "
                                                    f"{seen_dtmf[dtmf]!r} both use it")
                if dtmf:
                    seen_dtmf[dtmf] = key
            elif isinstance(ov, MList | str):
                synonyms = self.strings(raw, key, w)
            elif ov is None:
                synonyms = ()
            else:
                self.err(raw.value_mark(key), f"{w} must be a list of synonyms or a mapping")
                continue
            syns = tuple(dict.fromkeys(s.lower() for s in (key.replace("_", " "), *synonyms)))
            for s in syns:
                if s in seen_syn and seen_syn[s] != key:
                    self.err(raw.key_mark(key), f"{w}: the phrase {s!r} also names option {seen_syn[s]!r}")
                seen_syn[s] = key
            out.append(Option(key=key, synonyms=syns, dtmf=dtmf, say=say))
        return tuple(out)
