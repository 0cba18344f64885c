"""Load a YAML dialplan into typed objects, or say exactly what is wrong with it, where.

Every check runs here, when a dialplan is loaded or published, never mid-call. Problems come back as
``file:line:col: message`` (positions kept by :mod:`voiceivr.yamlpos`), all of them, not just the
first. What is checked:

- YAML syntax, duplicate keys, unknown keys (typos), wrong value types;
- references: unknown nodes, intents, slots, actions, action parameters, slot types;
- the graph: unreachable nodes, dead ends (no way forward), loops that never wait for the caller;
- duplicate DTMF keys (on a node, against the global keys, among a slot's options);
- safety: a ``high`` action without a read-back confirmation, a read-back that does not say every
  parameter, an attempt to lower an action's risk, an action that needs a login on a node that does not
  require one, a secret slot (a PIN) spoken in a prompt, a secret action parameter filled by a slot not marked
  ``secret: true``;
- prompts using variables that are not defined on every path to them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceivr import yamlpos
from voiceivr.actions.address import MAX_ADDRESS_CHARS
from voiceivr.actions.registry import SLOT_TYPES_FOR_PARAM, ActionRegistry
from voiceivr.dialplan import hours
from voiceivr.dialplan.freetext import DEFAULT_ADDRESS_CHARS, DEFAULT_TEXT_CHARS, MAX_TEXT_CHARS
from voiceivr.dialplan.model import (
    AGENT,
    GLOBAL_NAMES,
    GOODBYE,
    RETURN,
    SPECIAL_TARGETS,
    STATES,
    UNINTERRUPTIBLE_KINDS,
    VAR_RE,
    ActionCall,
    Confirm,
    Dialplan,
    Emergency,
    Fallback,
    GlobalIntent,
    Holiday,
    IntentSpec,
    Messages,
    Node,
    ParamValue,
    PromptSpec,
    Route,
    Routing,
    Schedule,
    ScheduleBranch,
    SlotSpec,
    TimeRange,
)
from voiceivr.dialplan.slots import FREE_TEXT_TYPES, SLOT_TYPES, Money, Option, extract_money
from voiceivr.errors import VoiceivrError
from voiceivr.yamlpos import Mark, MDict, MList, Problem

PROMPT_KINDS = ("prompt", "reprompt", "menu", "readback", "disclosure", "code_request", "info", "goodbye")
DTMF_KEYS = frozenset("0123456789*#")
# Variables the engine supplies to its own messages.
MESSAGE_BUILTINS: Mapping[str, frozenset[str]] = {
    "code_sms": frozenset({"destination"}),
    "clarify": frozenset({"options"}),
    "clarify_choice": frozenset({"options"}),
}


class DialplanInvalid(VoiceivrError):
    def __init__(self, problems: list[Problem]) -> None:
        first = str(problems[0]) if problems else "invalid dialplan"
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(first + more, hint="run `voiceivr dialplan validate FILE` to list every problem")
        self.problems = problems


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_source(path: str | Path) -> str:
    """A dialplan file's text; a file over :data:`yamlpos.MAX_BYTES` is refused before it is read."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(yamlpos.MAX_BYTES + 1)  # no more, whatever stat said (a pipe, a growing file)
    except OSError as exc:
        raise DialplanInvalid([Problem(str(p), 1, 1, f"cannot read: {exc.strerror}")]) from None
    if len(data) > yamlpos.MAX_BYTES:
        raise DialplanInvalid([Problem(str(p), 1, 1, f"{max(size, len(data)):,} bytes; a dialplan may be at most "
                                                     f"{yamlpos.MAX_BYTES:,} (check this is the right file)")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DialplanInvalid([Problem(str(p), 1, 1, "not UTF-8 text")]) from None


def load_file(path: str | Path, registry: ActionRegistry) -> Dialplan:
    return load_text(read_source(path), str(path), registry)


def load_text(text: str, filename: str, registry: ActionRegistry) -> Dialplan:
    plan, problems = check_text(text, filename, registry)
    if problems or plan is None:
        raise DialplanInvalid(problems)
    return plan


def check_text(text: str, filename: str, registry: ActionRegistry) -> tuple[Dialplan | None, list[Problem]]:
    """The dialplan (None if it could not be built) and every problem found, sorted by position."""
    b = _Builder(text, filename, registry)
    plan = b.build()
    problems = sorted(set(b.problems))
    return (plan if not problems else None), problems


# --- building ---------------------------------------------------------------------------------------------


class _Skip(Exception):
    """A value is too broken to build from; the problem is already recorded."""


@dataclass
class _NodeInfo:
    node: Node
    raw: MDict
    mark: Mark


class _Builder:
    def __init__(self, text: str, filename: str, registry: ActionRegistry) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.file = filename
        self.registry = registry
        self.problems: list[Problem] = []

    # -- reporting --

    def err(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(self.file, mark.line, mark.col, message))

    def var_mark(self, mark: Mark, var_text: str) -> Mark:
        """Point at the variable itself when the prompt text sits on the line its value starts on."""
        if 0 < mark.line <= len(self.lines):
            line = self.lines[mark.line - 1]
            idx = line.find(var_text, mark.col - 1)
            if idx >= 0:
                return Mark(mark.line, idx + 1)
        return mark

    # -- typed getters --

    def keys(self, d: MDict, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for k in d:
            if k not in allowed:
                self.err(d.key_mark(k), f"unknown key {k!r} in {where}; expected one of: {', '.join(allowed)}")

    def mapping(self, d: MDict, key: str, where: str, required: bool = False) -> MDict | None:
        if key not in d or d[key] is None:
            if required:
                self.err(d.mark, f"{where} needs {key}:")
            return None
        v = d[key]
        if not isinstance(v, MDict):
            self.err(d.value_mark(key), f"{where}.{key} must be a mapping (key: value lines)")
            return None
        return v

    def string(self, d: MDict, key: str, where: str, required: bool = False, default: str | None = None) -> str | None:
        if key not in d or d[key] is None:
            if required:
                self.err(d.mark, f"{where} needs {key}:")
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            self.err(d.value_mark(key), f"{where}.{key} must be text")
            return default
        return str(v)

    def number(self, d: MDict, key: str, where: str, default: float, lo: float, hi: float) -> float:
        if key not in d:
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            self.err(d.value_mark(key), f"{where}.{key} must be a number from {lo:g} to {hi:g}")
            return default
        return float(v)

    def integer(self, d: MDict, key: str, where: str, default: int, lo: int, hi: int) -> int:
        if key not in d:
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.err(d.value_mark(key), f"{where}.{key} must be a whole number from {lo} to {hi}")
            return default
        return v

    def boolean(self, d: MDict, key: str, where: str, default: bool) -> bool:
        if key not in d:
            return default
        v = d[key]
        if not isinstance(v, bool):
            self.err(d.value_mark(key), f"{where}.{key} must be true or false")
            return default
        return v

    def strings(self, d: MDict, key: str, where: str) -> tuple[str, ...]:
        if key not in d or d[key] is None:
            return ()
        v = d[key]
        if isinstance(v, str):
            return (v,)
        if not isinstance(v, MList):
            self.err(d.value_mark(key), f"{where}.{key} must be a list of phrases")
            return ()
        out = []
        for i, item in enumerate(v):
            if isinstance(item, bool) or not isinstance(item, str | int | float) or not str(item).strip():
                self.err(v.item_mark(i), f"{where}.{key}[{i}] must be a non-empty phrase")
            else:
                out.append(str(item))
        return tuple(out)

    def dtmf(self, d: MDict, key: str, where: str) -> str | None:
        if key not in d or d[key] is None:
            return None
        v = str(d[key])
        if isinstance(d[key], bool) or len(v) != 1 or v not in DTMF_KEYS:
            self.err(d.value_mark(key), f"{where}.{key} must be one keypad key: 0-9, * or # (quote * and #)")
            return None
        return v

    def prompts(self, d: MDict, key: str, where: str, kind: str = "prompt") -> tuple[tuple[PromptSpec, Mark], ...]:
        if key not in d or d[key] is None:
            return ()
        v = d[key]
        items: list[tuple[Any, Mark]]
        if isinstance(v, MList):
            items = [(item, v.item_mark(i)) for i, item in enumerate(v)]
        else:
            items = [(v, d.value_mark(key))]
        out = []
        for item, mark in items:
            p = self.prompt(item, mark, f"{where}.{key}", kind)
            if p is not None:
                out.append((p, mark))
        return tuple(out)

    def prompt(self, v: Any, mark: Mark, where: str, kind: str = "prompt") -> PromptSpec | None:
        interruptible = kind not in UNINTERRUPTIBLE_KINDS
        if isinstance(v, MDict):
            self.keys(v, ("text", "interruptible", "kind"), where)
            text = self.string(v, "text", where, required=True)
            kind = self.string(v, "kind", where, default=kind) or kind
            if kind not in PROMPT_KINDS:
                self.err(v.value_mark("kind"), f"{where}.kind must be one of: {', '.join(PROMPT_KINDS)}")
                kind = "prompt"
            default_int = kind not in UNINTERRUPTIBLE_KINDS
            interruptible = self.boolean(v, "interruptible", where, default_int)
            if interruptible and kind in UNINTERRUPTIBLE_KINDS:
                self.err(v.value_mark("interruptible"),
                         f"{where}: a {kind} is never interruptible (the caller must hear all of it)")
                interruptible = False
            if text is None:
                return None
        elif isinstance(v, str) and v.strip():
            text = v
        else:
            self.err(mark, f"{where} must be text or a mapping with text:")
            return None
        self.check_braces(text, mark, where)
        return PromptSpec(text=text, kind=kind, interruptible=interruptible)  # type: ignore[arg-type]

    def check_braces(self, text: str, mark: Mark, where: str) -> None:
        stripped = VAR_RE.sub("", text.replace("{{", "").replace("}}", ""))
        if "{" in stripped or "}" in stripped:
            self.err(mark, f"{where}: a brace that is not a {{variable}}; write {{{{ or }}}} for a literal brace")

    # -- the document --

    def build(self) -> Dialplan | None:
        try:
            doc, yproblems = yamlpos.load(self.text)
        except yamlpos.YamlSyntaxError as exc:
            self.err(exc.mark, exc.message)
            return None
        for yp in yproblems:
            self.err(yp.mark, yp.message)
        if not isinstance(doc, MDict):
            self.err(Mark(1, 1), "a dialplan is a YAML mapping with name:, start: and nodes:")
            return None
        self.keys(doc, ("name", "description", "start", "main_menu", "login", "vars", "agent", "routing",
                        "fallback", "messages", "intents", "global_intents", "slots", "schedules", "nodes"),
                  "the dialplan")
        name = self.string(doc, "name", "the dialplan", required=True) or ""
        if name and not name.replace("-", "").replace("_", "").isalnum():
            self.err(doc.value_mark("name"), "name must be letters, digits, - and _ (it names published versions)")
        description = self.string(doc, "description", "the dialplan", default="") or ""

        vars_ = self.build_vars(doc)
        routing = self.build_routing(doc)
        fallback = self.build_fallback(self.mapping(doc, "fallback", "the dialplan"), "fallback", Fallback())
        messages = self.build_messages(doc, vars_)
        agent = self.mapping(doc, "agent", "the dialplan")
        agent_target = ""
        if agent is not None:
            self.keys(agent, ("target",), "agent")
            agent_target = self.string(agent, "target", "agent", required=True) or ""
        intents = self.build_intents(doc)
        globals_ = self.build_globals(doc)
        slots = self.build_slots(doc)
        schedules = self.build_schedules(doc, vars_)

        nodes_raw = self.mapping(doc, "nodes", "the dialplan", required=True)
        infos: dict[str, _NodeInfo] = {}
        if nodes_raw is not None:
            for nid, raw in nodes_raw.items():
                info = self.build_node(nid, raw, nodes_raw.key_mark(nid), nodes_raw.value_mark(nid), fallback,
                                       intents, slots, globals_, schedules)
                if info is not None:
                    infos[nid] = info
        if nodes_raw is not None and not nodes_raw:
            self.err(nodes_raw.mark, "nodes: is empty; a dialplan needs at least its start node")

        start = self.node_ref(doc, "start", infos, required=True) or ""
        main_menu = self.node_ref(doc, "main_menu", infos) or start
        login = self.node_ref(doc, "login", infos)

        if nodes_raw is not None and infos:
            self.check_targets(infos, nodes_raw)
            self.check_schedule_targets(schedules, infos, doc)
            self.check_login(infos, login, doc)
            self.check_graph(infos, nodes_raw, start, main_menu, login)
            self.check_dtmf(infos, globals_, doc)
            self.check_variables(infos, vars_, slots, doc, start, main_menu, login)
        if any(n.node.end == "agent" or AGENT in _targets(n.node) for n in infos.values()) and not agent_target:
            self.err(doc.mark, "nodes transfer to an agent, but agent: target: is not set")

        if self.problems:
            return None
        return Dialplan(
            name=name, description=description, start=start, main_menu=main_menu, login=login, vars=vars_,
            agent_target=agent_target, intents=intents, globals=globals_, slots=slots,
            nodes={k: v.node for k, v in infos.items()}, routing=routing, messages=messages, fallback=fallback,
            schedules=schedules,
            source_path=self.file, sha256=sha256_text(self.text),
        )

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
        names = [f.name for f in dataclasses.fields(Routing)]
        if "confirm_min_confidence" in raw:
            # One threshold for the engine and the gate (they disagreed: 0.5 here, 0.6 in the policy).
            self.err(raw.key_mark("confirm_min_confidence"),
                     "routing.confirm_min_confidence is no longer a dialplan setting: the policy owns it "
                     "(policy.confirm_min_confidence); remove it here")
        self.keys(raw, [*names, "confirm_min_confidence"], "routing")
        base = Routing()
        return Routing(**{n: self.number(raw, n, "routing", getattr(base, n), 0.0, 1.0) for n in names})

    def build_fallback(self, raw: MDict | None, where: str, base: Fallback) -> Fallback:
        if raw is None:
            return base
        self.keys(raw, [f.name for f in dataclasses.fields(Fallback)], where)
        then = self.string(raw, "then", where, default=base.then) or base.then
        if then not in ("agent", "goodbye"):
            self.err(raw.value_mark("then"), f"{where}.then must be agent or goodbye")
            then = base.then
        return Fallback(
            no_input=self.integer(raw, "no_input", where, base.no_input, 0, 10),
            no_match=self.integer(raw, "no_match", where, base.no_match, 0, 10),
            dtmf_menu=self.boolean(raw, "dtmf_menu", where, base.dtmf_menu),
            then=then,  # type: ignore[arg-type]
            timeout_s=self.number(raw, "timeout_s", where, base.timeout_s, 1.0, 60.0),
            inter_digit_timeout_s=self.number(raw, "inter_digit_timeout_s", where, base.inter_digit_timeout_s,
                                              0.5, 30.0),
        )

    def build_messages(self, doc: MDict, vars_: Mapping[str, str]) -> Messages:
        raw = self.mapping(doc, "messages", "the dialplan")
        if raw is None:
            return Messages()
        names = [f.name for f in dataclasses.fields(Messages)]
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
            self.keys(v, ("label", "examples", "keywords", "description"), where)
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
            self.keys(v, ("examples", "keywords", "dtmf"), where)
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
            except _Skip:
                pass
        return out

    def build_slot(self, name: str, v: Any, parent: MDict) -> SlotSpec:
        where = f"slots.{name}"
        if not name.isidentifier():
            self.err(parent.key_mark(name), f"{where}: a slot name is letters, digits and _")
            raise _Skip
        if not isinstance(v, MDict):
            self.err(parent.value_mark(name), f"{where} must be a mapping with type: and ask:")
            raise _Skip
        self.keys(v, ("type", "ask", "keyed", "length", "min_length", "max_length", "min", "max", "options", "cues",
                      "default", "secret", "prefer", "max_chars"), where)
        stype = self.string(v, "type", where, required=True)
        if stype is None:
            raise _Skip
        if stype not in SLOT_TYPES:
            self.err(v.value_mark("type"), f"{where}: unknown slot type {stype!r}; known: {', '.join(SLOT_TYPES)}")
            raise _Skip
        asks = self.prompts(v, "ask", where)
        if not asks:
            self.err(v.mark, f"{where} needs ask: (what to say to ask for it)")
            raise _Skip
        keyed = self.prompts(v, "keyed", where)
        min_len = self.integer(v, "min_length", where, 1, 1, 64)
        max_len = self.integer(v, "max_length", where, 32, 1, 64)
        if "length" in v:
            min_len = max_len = self.integer(v, "length", where, 4, 1, 64)
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
        max_chars = self.integer(v, "max_chars", where, DEFAULT_ADDRESS_CHARS if stype == "address" else
                                 DEFAULT_TEXT_CHARS, 1, MAX_ADDRESS_CHARS if stype == "address" else MAX_TEXT_CHARS)
        if "max_chars" in v and stype not in FREE_TEXT_TYPES:
            self.err(v.key_mark("max_chars"), f"{where}.max_chars applies only to text and address slots")
        default = self.string(v, "default", where)
        if default is not None and default not in {o.key for o in options}:
            self.err(v.value_mark("default"), f"{where}.default must be one of its options")
        prefer = self.string(v, "prefer", where, default="future") or "future"
        if prefer not in ("future", "past"):
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
                self.keys(ov, ("synonyms", "say", "dtmf"), w)
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

    def node_ref(self, doc: MDict, key: str, infos: Mapping[str, _NodeInfo], required: bool = False) -> str | None:
        ref = self.string(doc, key, "the dialplan", required=required)
        if ref is not None and ref not in infos:
            self.err(doc.value_mark(key), f"{key}: unknown node {ref!r}{_suggest(ref, infos)}")
            return None
        return ref

    # -- nodes --

    def build_node(self, nid: str, raw: Any, key_mark: Mark, value_mark: Mark, base_fallback: Fallback,
                   intents: Mapping[str, IntentSpec], slots: Mapping[str, SlotSpec],
                   globals_: Mapping[str, GlobalIntent],
                   schedules: Mapping[str, Schedule] | None = None) -> _NodeInfo | None:
        where = f"node {nid}"
        if nid.startswith("$"):
            self.err(key_mark, f"{where}: node names cannot start with $ ({', '.join(SPECIAL_TARGETS)} are built in)")
            return None
        if not isinstance(raw, MDict):
            self.err(value_mark, f"{where} must be a mapping (say:, collect:, action:, routes:, goto:, end:)")
            return None
        self.keys(raw, ("say", "requires", "collect", "action", "routes", "goto", "end", "fallback", "menu",
                        "schedule"), where)
        say = tuple(p for p, _ in self.prompts(raw, "say", where))
        requires = self.string(raw, "requires", where)
        if requires is not None and requires != "login":
            self.err(raw.value_mark("requires"), f"{where}.requires can only be login")
        collect: list[str] = []
        if "collect" in raw:
            craw = raw["collect"]
            items = craw if isinstance(craw, MList) else MList([craw]) if isinstance(craw, str) else None
            if items is None:
                self.err(raw.value_mark("collect"), f"{where}.collect must be a list of slot names")
            else:
                for i, s in enumerate(items):
                    mark = craw.item_mark(i) if isinstance(craw, MList) else raw.value_mark("collect")
                    if not isinstance(s, str):
                        self.err(mark, f"{where}.collect[{i}] must be a slot name")
                    elif s not in slots:
                        self.err(mark, f"{where} collects unknown slot {s!r}{_suggest(s, slots)}; declare it under "
                                       "slots:")
                    elif s in collect:
                        self.err(mark, f"{where} collects slot {s!r} twice")
                    else:
                        collect.append(s)
        action = self.build_action(raw, where, slots, collect, requires == "login")
        routes = self.build_routes(raw, where, intents)
        goto = self.string(raw, "goto", where)
        end = self.string(raw, "end", where)
        if end is not None and end not in ("hangup", "agent"):
            self.err(raw.value_mark("end"), f"{where}.end must be hangup or agent")
            end = None
        if end and (goto or routes):
            self.err(raw.key_mark("end"), f"{where}: end: cannot be combined with goto: or routes:")
        if goto and routes:
            self.err(raw.key_mark("goto"), f"{where}: goto: and routes: exclude each other (routes wait for the "
                                           "caller, goto moves on at once)")
        branch = self.build_branch(raw, where, schedules or {})
        if branch is not None and (goto or routes or end):
            self.err(raw.key_mark("schedule"), f"{where}: schedule: chooses where to go, so it cannot be combined "
                                               "with goto:, routes: or end:")
        fallback = self.build_fallback(self.mapping(raw, "fallback", where), f"{where}.fallback", base_fallback)
        menu = self.prompts(raw, "menu", where, kind="menu")
        node = Node(
            id=nid, say=say, requires_login=requires == "login", collect=tuple(collect), action=action,
            routes=routes, goto=goto, end=end,  # type: ignore[arg-type]
            fallback=fallback, menu=menu[0][0] if menu else None, schedule=branch,
        )
        return _NodeInfo(node=node, raw=raw, mark=key_mark)

    def build_branch(self, raw: MDict, where: str, schedules: Mapping[str, Schedule]) -> ScheduleBranch | None:
        b = self.mapping(raw, "schedule", where)
        if b is None:
            return None
        w = f"{where}.schedule"
        self.keys(b, ("name", *STATES), w)
        name = self.string(b, "name", w, required=True)
        open_ = self.string(b, "open", w, required=True)
        closed = self.string(b, "closed", w, required=True)
        if name is None or open_ is None or closed is None:
            return None
        if name not in schedules:
            self.err(b.value_mark("name"), f"{w}: unknown schedule {name!r}{_suggest(name, schedules)}; declare it "
                                           "under schedules:")
            return None
        emergency = self.string(b, "emergency", w) or schedules[name].emergency.goto or closed
        return ScheduleBranch(schedule=name, open=open_, closed=closed,
                              holiday=self.string(b, "holiday", w) or closed, emergency=emergency)

    # -- schedules --

    def build_schedules(self, doc: MDict, vars_: Mapping[str, str]) -> dict[str, Schedule]:
        raw = self.mapping(doc, "schedules", "the dialplan")
        out: dict[str, Schedule] = {}
        if raw is None:
            return out
        for name, v in raw.items():
            try:
                out[name] = self.build_schedule(name, v, raw, vars_)
            except _Skip:
                pass
        return out

    def build_schedule(self, name: str, v: Any, parent: MDict, vars_: Mapping[str, str]) -> Schedule:
        where = f"schedules.{name}"
        if not name.isidentifier():
            self.err(parent.key_mark(name), f"{where}: a schedule name is letters, digits and _")
            raise _Skip
        if not isinstance(v, MDict):
            self.err(parent.value_mark(name), f"{where} must be a mapping with timezone: and open:")
            raise _Skip
        self.keys(v, ("timezone", "open", "holidays", "emergency"), where)
        zone = self.string(v, "timezone", where, required=True)
        if zone is None:
            raise _Skip
        try:
            hours.ZoneInfo(zone)
        except (KeyError, ValueError, OSError):  # not found is a KeyError; "../x" a ValueError
            self.err(v.value_mark("timezone"), f"{where}.timezone: unknown time zone {zone!r}; use an IANA name "
                                               "such as America/New_York, Europe/London or UTC")
            raise _Skip from None
        week = self.build_week(v, where)
        holidays = self.build_holidays(v, where, vars_)
        emergency = self.build_emergency(v, where, vars_)
        return Schedule(name=name, timezone=zone, week=week, holidays=holidays, emergency=emergency)

    def time_ranges(self, v: Any, mark: Mark, where: str, overnight: bool) -> tuple[TimeRange, ...]:
        """``"09:00-17:00"``, a list of those, or ``closed``."""
        if v == "closed" or v is None:
            return ()
        items = [(v, mark)] if isinstance(v, str) else \
            [(item, v.item_mark(i)) for i, item in enumerate(v)] if isinstance(v, MList) else None
        if items is None:
            self.err(mark, f"{where} must be a range such as \"09:00-17:00\", a list of them, or closed")
            return ()
        out = []
        for item, imark in items:
            try:
                if not isinstance(item, str):
                    raise hours.BadHours(f"{item!r} is not a time range; write it in quotes as \"09:00-17:00\"")
                out.append(hours.parse_range(item, overnight=overnight))
            except hours.BadHours as exc:
                self.err(imark, f"{where}: {exc}")
        return tuple(sorted(out))

    def build_week(self, v: MDict, where: str) -> tuple[tuple[TimeRange, ...], ...]:
        raw = self.mapping(v, "open", where)
        week: list[tuple[TimeRange, ...]] = [()] * 7
        if raw is None:
            return tuple(week)
        named: dict[int, str] = {}
        marks: dict[int, Mark] = {}
        for key, ranges in raw.items():
            try:
                days = hours.parse_days(str(key))
            except hours.BadHours as exc:
                self.err(raw.key_mark(key), f"{where}.open: {exc}")
                continue
            parsed = self.time_ranges(ranges, raw.value_mark(key), f"{where}.open.{key}", overnight=True)
            for day in days:
                if day in named:
                    self.err(raw.key_mark(key), f"{where}.open: {hours.WEEKDAYS[day]} is given twice ({named[day]} "
                                                f"and {key}); give each day once")
                    continue
                named[day] = str(key)
                marks[day] = raw.value_mark(key)
                week[day] = parsed
        for d1, r1, d2, r2 in hours.overlaps(tuple(week)):
            self.err(marks[d2], f"{where}.open: {hours.WEEKDAYS[d2]} {r2} overlaps {hours.WEEKDAYS[d1]} {r1}; "
                                "join them into one range")
        return tuple(week)

    def build_holidays(self, v: MDict, where: str, vars_: Mapping[str, str]) -> dict[dt.date, Holiday]:
        out: dict[dt.date, Holiday] = {}
        if "holidays" not in v or v["holidays"] is None:
            return out
        raw = v["holidays"]
        if not isinstance(raw, MList):
            self.err(v.value_mark("holidays"), f"{where}.holidays must be a list of {{date:, name:}}")
            return out
        for i, h in enumerate(raw):
            w = f"{where}.holidays[{i}]"
            if not isinstance(h, MDict):
                self.err(raw.item_mark(i), f"{w} must be a mapping with date: and name:")
                continue
            self.keys(h, ("date", "name", "open", "say"), w)
            day = self.date(h, "date", w)
            name = self.string(h, "name", w, required=True) or ""
            ranges = self.time_ranges(h.get("open"), h.value_mark("open"), f"{w}.open", overnight=False)
            for _, r1, _, r2 in hours.overlaps((ranges, (), (), (), (), (), ())):
                self.err(h.value_mark("open"), f"{w}.open: {r2} overlaps {r1}; join them into one range")
            say = self.schedule_prompt(h, w, vars_)
            if day is None:
                continue
            if day in out:
                self.err(h.value_mark("date"), f"{w}: {day.isoformat()} is already a holiday ({out[day].name})")
                continue
            out[day] = Holiday(date=day, name=name, hours=ranges, say=say)
        return out

    def build_emergency(self, v: MDict, where: str, vars_: Mapping[str, str]) -> Emergency:
        raw = v.get("emergency")
        if raw is None:
            return Emergency()
        if isinstance(raw, bool):
            return Emergency(active=raw)
        w = f"{where}.emergency"
        if not isinstance(raw, MDict):
            self.err(v.value_mark("emergency"), f"{w} must be true, false, or a mapping with active:, say:, goto:")
            return Emergency()
        self.keys(raw, ("active", "say", "goto"), w)
        if "active" not in raw:
            self.err(raw.mark, f"{w} needs active: true or false (the switch an admin flips)")
        return Emergency(active=self.boolean(raw, "active", w, False), say=self.schedule_prompt(raw, w, vars_),
                               goto=self.string(raw, "goto", w))

    def schedule_prompt(self, d: MDict, where: str, vars_: Mapping[str, str]) -> PromptSpec | None:
        """A holiday's or an emergency's own message: it may use vars: only (no slot is certain at a branch)."""
        said = self.prompts(d, "say", where)
        for p, mark in said:
            for var, fld in p.variables():
                if var not in vars_ or fld:
                    shown = f"{{{var}.{fld}}}" if fld else f"{{{var}}}"
                    self.err(self.var_mark(mark, shown), f"{where}.say uses {shown}; here only vars: are defined "
                                                         f"({', '.join(sorted(vars_)) or 'none'})")
        return said[0][0] if said else None

    def date(self, d: MDict, key: str, where: str) -> dt.date | None:
        if key not in d or d[key] is None:
            mark = d.value_mark(key)
            # None is also what the YAML reader leaves for "2026-12-32", which it has already reported there.
            if not any((p.line, p.col) == (mark.line, mark.col) for p in self.problems):
                self.err(d.mark, f"{where} needs {key}:")
            return None
        v = d[key]
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return v
        try:
            return dt.date.fromisoformat(str(v).strip())
        except ValueError:
            self.err(d.value_mark(key), f"{where}.{key}: {v!r} is not a date; write it as 2026-12-25")
            return None

    def build_routes(self, raw: MDict, where: str, intents: Mapping[str, IntentSpec]) -> tuple[Route, ...]:
        routes_raw = self.mapping(raw, "routes", where)
        if routes_raw is None:
            return ()
        out = []
        for intent, rv in routes_raw.items():
            w = f"{where}.routes.{intent}"
            if intent not in intents:
                self.err(routes_raw.key_mark(intent), f"{where} routes unknown intent {intent!r}"
                                                      f"{_suggest(intent, intents)}; declare it under intents:")
                continue
            if isinstance(rv, str):
                out.append(Route(intent=intent, goto=rv))
                continue
            if not isinstance(rv, MDict):
                self.err(routes_raw.value_mark(intent), f"{w} must be a node name or a mapping with goto:")
                continue
            self.keys(rv, ("goto", "dtmf"), w)
            goto = self.string(rv, "goto", w, required=True)
            dtmf = self.dtmf(rv, "dtmf", w)
            spec = intents[intent]
            if not spec.examples and not spec.keywords and dtmf is None:
                self.err(routes_raw.key_mark(intent), f"{w}: intent {intent!r} has no examples, keywords or dtmf "
                                                      "key: callers have no way to choose it")
            if goto:
                out.append(Route(intent=intent, goto=goto, dtmf=dtmf))
        return tuple(out)

    def build_action(self, raw: MDict, where: str, slots: Mapping[str, SlotSpec], collect: list[str],
                     requires_login: bool) -> ActionCall | None:
        a = self.mapping(raw, "action", where)
        if a is None:
            return None
        w = f"{where}.action"
        self.keys(a, ("name", "risk", "params", "confirm", "save_as", "success", "failure", "on_success",
                      "on_failure"), w)
        name = self.string(a, "name", w, required=True)
        if name is None:
            return None
        if name not in self.registry:
            hint = _suggest(name, self.registry.names())
            if not hint and self.registry.origin:  # e.g. no plugin enabled: say where actions would come from
                hint = f" (actions come from {self.registry.origin})"
            self.err(a.value_mark("name"), f"{w}: unknown action {name!r}{hint}")
            return None
        spec = self.registry.get(name)
        risk = spec.risk
        declared = self.string(a, "risk", w)
        if declared is not None:
            if declared not in ("low", "high"):
                self.err(a.value_mark("risk"), f"{w}.risk must be low or high")
            elif declared == "low" and spec.risk == "high":
                self.err(a.value_mark("risk"), f"{w}: action {name} is high risk; a dialplan can raise an "
                                               "action's risk but never lower it")
            elif declared == "high":
                risk = "high"
        if spec.requires_login and not requires_login:
            self.err(a.value_mark("name"), f"{w}: action {name} needs an identified caller; add requires: login "
                                           f"to {where}")
        params: dict[str, ParamValue] = {}
        praw = self.mapping(a, "params", w)
        if praw is not None:
            for pname, pv in praw.items():
                p = spec.param(pname)
                if p is None:
                    self.err(praw.key_mark(pname), f"{w}: action {name} has no parameter {pname!r} (its parameters: "
                                                   f"{', '.join(x.name for x in spec.params) or 'none'})")
                    continue
                if isinstance(pv, MDict | MList) or pv is None:
                    self.err(praw.value_mark(pname), f"{w}.params.{pname} must be text or a {{slot}}")
                    continue
                text = str(pv)
                m = VAR_RE.fullmatch(text)
                if m:
                    ref = m.group(1)
                    if ref not in slots:
                        self.err(praw.value_mark(pname), f"{w}.params.{pname}: {{{ref}}} is not a slot")
                        continue
                    if ref not in collect:
                        self.err(praw.value_mark(pname), f"{w}.params.{pname}: slot {ref!r} is not collected "
                                                         f"by {where}; add it to collect:")
                    stype = slots[ref].type
                    if stype not in SLOT_TYPES_FOR_PARAM[p.type]:
                        hint = "; give the slot type: address (it is checked as a postal address)" if (
                            p.type == "address") else ""
                        self.err(praw.value_mark(pname), f"{w}.params.{pname}: parameter {pname} is {p.type}, "
                                                         f"slot {ref} is {stype}{hint}")
                    if p.secret and not slots[ref].secret:
                        # What fills a secret parameter (a PIN) is a secret while the caller gives it: the slot
                        # must say so, or the call would keep and record it like any other answer.
                        self.err(praw.value_mark(pname), f"{w}.params.{pname}: parameter {pname} of {name} is "
                                                         f"secret, so slot {ref} must be marked secret: true")
                    params[pname] = ParamValue(ref=ref)
                else:
                    if "{" in text:
                        self.err(praw.value_mark(pname), f"{w}.params.{pname} must be a literal or exactly one "
                                                         "{slot}")
                        continue
                    if p.type not in ("str", "digits") or (p.type == "digits" and not text.isdigit()):
                        self.err(praw.value_mark(pname), f"{w}.params.{pname}: a {p.type} parameter must come "
                                                         "from a slot")
                        continue
                    params[pname] = ParamValue(literal=text)
        for p in spec.params:
            if p.required and p.name not in params and not (praw is not None and p.name in praw):
                self.err(a.mark, f"{w}: action {name} needs parameter {p.name!r} under params:")
        confirm = None
        craw = self.mapping(a, "confirm", w)
        if craw is not None:
            self.keys(craw, ("readback", "ask"), f"{w}.confirm")
            rb = self.prompts(craw, "readback", f"{w}.confirm", kind="readback")
            ask = self.prompts(craw, "ask", f"{w}.confirm", kind="prompt")
            if not rb:
                self.err(craw.mark, f"{w}.confirm needs readback: (exactly what will happen, read to the caller)")
            else:
                readback = rb[0][0]
                if readback.kind != "readback" or readback.interruptible:
                    self.err(rb[0][1], f"{w}.confirm.readback must be an uninterruptible readback")
                said = {v for v, _ in readback.variables()}
                for pname, pv in params.items():
                    # Literals are the dialplan's own; what the caller chose (slots) must be heard.
                    if pv.ref is not None and pname not in said and pv.ref not in said:
                        self.err(rb[0][1], f"{w}.confirm.readback does not say {{{pv.ref or pname}}}: the caller "
                                           f"must hear every detail of the action before agreeing to it")
                confirm = Confirm(readback=readback,
                                  ask=ask[0][0] if ask else PromptSpec("", kind="prompt"))
        if risk == "high" and confirm is None:
            self.err(a.value_mark("name"), f"{w}: high-risk action {name} is reachable without confirmation; add "
                                           "confirm: with a readback: (the safe path reads it back, then asks for "
                                           "an out-of-band code)")
        save_as = self.string(a, "save_as", w)
        if save_as is not None and (not save_as.isidentifier() or save_as in slots):
            self.err(a.value_mark("save_as"), f"{w}.save_as must be a new variable name (not a slot)")
        success = self.prompts(a, "success", w)
        failure = self.prompts(a, "failure", w)
        return ActionCall(
            name=name, risk=risk, params=params, confirm=confirm, save_as=save_as,
            success=success[0][0] if success else None, failure=failure[0][0] if failure else None,
            on_success=self.string(a, "on_success", w), on_failure=self.string(a, "on_failure", w),
            authenticates=spec.authenticates,
        )

    # -- whole-plan checks --

    def check_targets(self, infos: Mapping[str, _NodeInfo], nodes_raw: MDict) -> None:
        for nid, info in infos.items():
            raw = info.raw
            checks: list[tuple[str | None, Mark, str]] = [(info.node.goto, raw.value_mark("goto"), "goto")]
            if isinstance(raw.get("action"), MDict):
                a = raw["action"]
                checks += [(info.node.action.on_success if info.node.action else None, a.value_mark("on_success"),
                            "on_success"),
                           (info.node.action.on_failure if info.node.action else None, a.value_mark("on_failure"),
                            "on_failure")]
            branch, braw = info.node.schedule, raw.get("schedule")
            if branch is not None and isinstance(braw, MDict):
                # A state left out takes the closed target, or for emergency the schedule's own goto: each
                # is checked once, where it is written (check_schedule_targets).
                checks += [(branch.target(state), braw.value_mark(state), f"schedule.{state}")
                           for state in STATES if state in braw]
            routes_raw = raw.get("routes")
            for r in info.node.routes:
                mark = raw.mark
                if isinstance(routes_raw, MDict):
                    rv = routes_raw.get(r.intent)
                    mark = rv.value_mark("goto") if isinstance(rv, MDict) else routes_raw.value_mark(r.intent)
                checks.append((r.goto, mark, f"routes.{r.intent}"))
            for target, mark, what in checks:
                if target is not None and target not in infos and target not in SPECIAL_TARGETS:
                    self.err(mark, f"node {nid}.{what}: unknown node {target!r}{_suggest(target, infos)} "
                                   f"(or one of {', '.join(SPECIAL_TARGETS)})")

    def check_schedule_targets(self, schedules: Mapping[str, Schedule], infos: Mapping[str, _NodeInfo],
                               doc: MDict) -> None:
        for name, sched in schedules.items():
            target = sched.emergency.goto
            if target is None or target in infos or target in SPECIAL_TARGETS:
                continue
            raw = doc["schedules"][name]["emergency"]
            self.err(raw.value_mark("goto"), f"schedules.{name}.emergency.goto: unknown node {target!r}"
                                             f"{_suggest(target, infos)} (or one of {', '.join(SPECIAL_TARGETS)})")

    def check_login(self, infos: Mapping[str, _NodeInfo], login: str | None, doc: MDict) -> None:
        needing = [i for i in infos.values() if i.node.requires_login]
        if needing and login is None:
            self.err(needing[0].raw.key_mark("requires"),
                     f"node {needing[0].node.id} requires login but the dialplan has no login: node")
        if login is not None and login in infos:
            node = infos[login].node
            if node.action is None or not node.action.authenticates:
                self.err(doc.value_mark("login"), f"login: node {login} must run an action that identifies the "
                                                  f"caller (e.g. login)")
            if node.requires_login:
                self.err(infos[login].raw.key_mark("requires"), f"login node {login} cannot itself require login")

    def check_graph(self, infos: Mapping[str, _NodeInfo], nodes_raw: MDict, start: str, main_menu: str,
                    login: str | None) -> None:
        edges = {nid: [t for t in _targets(info.node) if t in infos] for nid, info in infos.items()}
        roots = [r for r in (start, main_menu) if r in infos]
        if login and any(i.node.requires_login for i in infos.values()):
            roots.append(login)
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(edges[cur])
        for nid, info in infos.items():
            if nid not in seen:
                self.err(info.mark, f"node {nid} is unreachable: nothing leads to it from start ({start})")
        for nid, info in infos.items():
            n = info.node
            forward = bool(n.routes or n.goto or n.end or n.schedule)
            if n.action and n.action.on_success and n.action.on_failure:
                forward = True
            if not forward:
                self.err(info.mark, f"node {nid} is a dead end: after it the caller would hear silence; add goto:, "
                                    "routes:, or end: hangup|agent")
            elif not n.routes and not n.goto and not n.end and not n.schedule and n.action and not (
                    n.action.on_success and n.action.on_failure):
                self.err(info.mark, f"node {nid}: its action needs both on_success: and on_failure: or the node a "
                                    "goto:")
        # Loops that never wait for the caller would spin forever.
        waits = {nid: bool(i.node.routes or i.node.collect or (i.node.action and i.node.action.confirm))
                 for nid, i in infos.items()}
        auto: dict[str, list[str]] = {}
        for nid, i in infos.items():
            outs = [i.node.goto] + ([i.node.action.on_success, i.node.action.on_failure] if i.node.action else [])
            outs += _branch_targets(i.node)
            auto[nid] = [t for t in outs if t is not None and t in infos and not waits[nid]]
        # A depth-first walk with its own stack: a recursive one hit Python's recursion limit on a chain of
        # ~1,000 nodes. state: 1 = on the path being walked, 2 = done.
        state: dict[str, int] = {}
        for root in infos:
            if root in state:
                continue
            state[root] = 1
            path: list[str] = [root]
            pending: list[Iterator[str]] = [iter(auto[root])]
            while path:
                t = next(pending[-1], None)
                if t is None:
                    state[path.pop()] = 2
                    pending.pop()
                elif state.get(t) == 1:
                    cycle = [*path[path.index(t):], t]
                    self.err(infos[t].mark, f"nodes {' -> '.join(cycle)} loop without ever waiting for the caller")
                elif t not in state:
                    state[t] = 1
                    path.append(t)
                    pending.append(iter(auto[t]))

    def check_dtmf(self, infos: Mapping[str, _NodeInfo], globals_: Mapping[str, GlobalIntent], doc: MDict) -> None:
        global_keys: dict[str, str] = {}
        graw = doc.get("global_intents")
        for g in globals_.values():
            if g.dtmf is None:
                continue
            if g.dtmf in global_keys and isinstance(graw, MDict):
                gv = graw[g.name]
                self.err(gv.value_mark("dtmf"), f"duplicate DTMF key {g.dtmf!r}: global intents "
                                                f"{global_keys[g.dtmf]} and {g.name} both use it")
            global_keys[g.dtmf] = g.name
        for nid, info in infos.items():
            used: dict[str, str] = {}
            routes_raw = info.raw.get("routes")
            for r in info.node.routes:
                if r.dtmf is None:
                    continue
                mark = info.mark
                if isinstance(routes_raw, MDict) and isinstance(routes_raw.get(r.intent), MDict):
                    mark = routes_raw[r.intent].value_mark("dtmf")
                if r.dtmf in used:
                    self.err(mark, f"duplicate DTMF key {r.dtmf!r} in node {nid}: {used[r.dtmf]} and {r.intent} "
                                   "both use it")
                elif r.dtmf in global_keys:
                    self.err(mark, f"duplicate DTMF key {r.dtmf!r} in node {nid}: {r.intent} and the global intent "
                                   f"{global_keys[r.dtmf]} both use it")
                used[r.dtmf] = r.intent

    def check_variables(self, infos: Mapping[str, _NodeInfo], vars_: Mapping[str, str],
                        slots: Mapping[str, SlotSpec], doc: MDict, start: str, main_menu: str,
                        login: str | None) -> None:
        """Every {variable} in a prompt must be defined on every path that reaches the prompt."""
        universe = frozenset(slots) | frozenset(
            i.node.action.save_as for i in infos.values() if i.node.action and i.node.action.save_as)
        avail: dict[str, frozenset[str]] = {nid: universe for nid in infos}
        entry_points = {start, main_menu} | ({login} if login else set())
        for nid in entry_points:
            if nid in avail:
                avail[nid] = frozenset()
        incoming: dict[str, list[tuple[str, frozenset[str]]]] = {nid: [] for nid in infos}
        for nid, info in infos.items():
            for target, defs in _edges_with_defs(info.node):
                if target in incoming:
                    incoming[target].append((nid, defs))
        changed = True
        while changed:
            changed = False
            for nid in infos:
                if nid in entry_points:
                    continue
                ins = [avail[p] | defs for p, defs in incoming[nid]]
                new = frozenset.intersection(*ins) if ins else frozenset()
                if new != avail[nid]:
                    avail[nid] = new
                    changed = True

        returns_of = {}
        for info in infos.values():
            a = info.node.action
            if a and a.save_as:
                returns_of[a.save_as] = self.registry.get(a.name).returns

        def check(prompt: PromptSpec, mark: Mark, scope: frozenset[str], where: str,
                  extra: frozenset[str] = frozenset()) -> None:
            for var, fld in prompt.variables():
                shown = f"{{{var}.{fld}}}" if fld else f"{{{var}}}"
                vm = self.var_mark(mark, shown)
                if var in slots and slots[var].secret:
                    self.err(vm, f"{where} speaks {shown}, a secret slot: it must never be said aloud")
                    continue
                if fld is None and (var in vars_ or var in extra or (var in scope and var in slots)):
                    continue
                if fld is not None and var in scope and var in returns_of:
                    if fld not in returns_of[var]:
                        self.err(vm, f"{where}: {shown}: the action saved as {var} returns "
                                     f"{', '.join(sorted(returns_of[var])) or 'nothing'}")
                    continue
                if fld is None and var in returns_of and var in scope:
                    self.err(vm, f"{where}: {shown} is an action result; name one of its fields, e.g. "
                                 f"{{{var}.{next(iter(sorted(returns_of[var])), 'field')}}}")
                    continue
                why = "is not defined on every path to here" if var in universe or var in slots else "is not defined"
                self.err(vm, f"{where} uses {shown}, which {why} (vars:, a slot collected before, or an action's "
                             "save_as)")

        for nid, info in infos.items():
            n, raw = info.node, info.raw
            scope = avail[nid]
            for p, mark in self.prompts(raw, "say", f"node {nid}") if "say" in raw else ():
                check(p, mark, scope, f"node {nid}.say")
            for p, mark in self.prompts(raw, "menu", f"node {nid}", kind="menu") if "menu" in raw else ():
                check(p, mark, scope, f"node {nid}.menu")
            collected = set(scope)
            sraw = doc.get("slots")
            for s in n.collect:
                spec = slots[s]
                if isinstance(sraw, MDict) and isinstance(sraw.get(s), MDict):
                    for key in ("ask", "keyed"):
                        for p, mark in self.prompts(sraw[s], key, f"slots.{s}") if key in sraw[s] else ():
                            check(p, mark, frozenset(collected), f"slots.{s}.{key} (asked in node {nid})")
                collected.add(spec.name)
            a = n.action
            araw = raw.get("action")
            if a is None or not isinstance(araw, MDict):
                continue
            after = frozenset(collected)
            params = frozenset(a.params)
            craw = araw.get("confirm")
            if isinstance(craw, MDict):
                for key, kind in (("readback", "readback"), ("ask", "prompt")):
                    for p, mark in self.prompts(craw, key, f"node {nid}.action.confirm", kind=kind) \
                            if key in craw else ():
                        check(p, mark, after, f"node {nid}.action.confirm.{key}", extra=params)
            with_result = after | ({a.save_as} if a.save_as else frozenset())
            for p, mark in self.prompts(araw, "success", f"node {nid}.action") if "success" in araw else ():
                check(p, mark, with_result, f"node {nid}.action.success", extra=params)
            for p, mark in self.prompts(araw, "failure", f"node {nid}.action") if "failure" in araw else ():
                check(p, mark, after, f"node {nid}.action.failure", extra=params | {"error"})


def _targets(node: Node) -> list[str]:
    out = [r.goto for r in node.routes]
    if node.goto:
        out.append(node.goto)
    out += _branch_targets(node)
    if node.action:
        out += [t for t in (node.action.on_success, node.action.on_failure) if t]
    if node.end == "agent":
        out.append(AGENT)
    if node.end == "hangup":
        out.append(GOODBYE)
    return out


def _branch_targets(node: Node) -> list[str]:
    b = node.schedule
    return [] if b is None else list(dict.fromkeys(b.target(state) for state in STATES))


def _edges_with_defs(node: Node) -> list[tuple[str, frozenset[str]]]:
    """Each way out of a node, with the variables certainly defined when it is taken."""
    slots = frozenset(node.collect)
    a = node.action
    success = slots | ({a.save_as} if a and a.save_as else frozenset())
    # Without on_failure a failed action carries on like a success, minus its results.
    carry_on = success if not a or a.on_failure else slots
    out: list[tuple[str, frozenset[str]]] = [(r.goto, carry_on) for r in node.routes]
    if node.goto:
        out.append((node.goto, carry_on))
    out += [(t, carry_on) for t in _branch_targets(node)]
    if a and a.on_success:
        out.append((a.on_success, success))
    if a and a.on_failure:
        out.append((a.on_failure, slots))
    return [(t, d) for t, d in out if t != RETURN]


def _suggest(name: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
