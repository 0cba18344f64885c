"""One node of a dialplan's ``nodes:``: its prompts, slots to collect, routes, goto/end, fallback, schedule
branch and action. The action is checked against the action registry here: unknown actions and parameters,
a parameter's slot of the wrong type or not collected, a secret parameter filled by a slot not marked
secret, an attempt to lower an action's risk, a login it needs, and a high-risk action without a read-back
that says every parameter the caller chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voiceivr.actions.registry import SLOT_TYPES_FOR_PARAM
from voiceivr.dialplan.io import TurnSpec
from voiceivr.dialplan.model import (
    SPECIAL_TARGETS,
    VAR_RE,
    ActionCall,
    Confirm,
    Fallback,
    GlobalIntent,
    IntentSpec,
    Node,
    ParamValue,
    PromptSpec,
    Route,
    Schedule,
    ScheduleBranch,
    SlotSpec,
)
from voiceivr.dialplan.schema import ACTION, BRANCH, CONFIRM, NODE, ROUTE, TURN
from voiceivr.dialplan.sections import SectionBuilder
from voiceivr.dialplan.typed import suggest
from voiceivr.yamlpos import Mark, MDict, MList


@dataclass
class NodeInfo:
    node: Node
    raw: MDict
    mark: Mark


class NodeBuilder(SectionBuilder):
    """Builds one node of ``nodes:`` and what it names: routes, its action (parameters, confirmation, risk) and
    its schedule branch."""

    def node_ref(self, doc: MDict, key: str, infos: Mapping[str, NodeInfo], required: bool = False) -> str | None:
        ref = self.string(doc, key, "the dialplan", required=required)
        if ref is not None and ref not in infos:
            self.err(doc.value_mark(key), f"{key}: unknown node {ref!r}{suggest(ref, infos)}")
            return None
        return ref

    def build_node(self, nid: str, raw: Any, key_mark: Mark, value_mark: Mark, base_fallback: Fallback,
                   intents: Mapping[str, IntentSpec], slots: Mapping[str, SlotSpec],
                   globals_: Mapping[str, GlobalIntent],
                   schedules: Mapping[str, Schedule] | None = None) -> NodeInfo | None:
        where = f"node {nid}"
        if nid.startswith("$"):
            self.err(key_mark, f"{where}: node names cannot start with $ ({', '.join(SPECIAL_TARGETS)} are built in)")
            return None
        if not isinstance(raw, MDict):
            self.err(value_mark, f"{where} must be a mapping (say:, collect:, action:, routes:, goto:, end:)")
            return None
        self.keys(raw, NODE.names, where)
        say = tuple(p for p, _ in self.prompts(raw, "say", where))
        requires = self.string(raw, "requires", where)
        if requires is not None and requires not in NODE.choices("requires"):
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
                        self.err(mark, f"{where} collects unknown slot {s!r}{suggest(s, slots)}; declare it under "
                                       "slots:")
                    elif s in collect:
                        self.err(mark, f"{where} collects slot {s!r} twice")
                    else:
                        collect.append(s)
        action = self.build_action(raw, where, slots, collect, requires == "login")
        routes = self.build_routes(raw, where, intents)
        goto = self.string(raw, "goto", where)
        end = self.string(raw, "end", where)
        if end is not None and end not in NODE.choices("end"):
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
        turn = self.build_turn(raw, where)
        node = Node(
            id=nid, say=say, requires_login=requires == "login", collect=tuple(collect), action=action,
            routes=routes, goto=goto, end=end,  # type: ignore[arg-type]
            fallback=fallback, menu=menu[0][0] if menu else None, schedule=branch, turn=turn,
        )
        return NodeInfo(node=node, raw=raw, mark=key_mark)

    def build_turn(self, raw: MDict, where: str) -> TurnSpec | None:
        """A node's ``turn:`` (voiceivr/call/turnend.py): only what it names differs from the call settings."""
        t = self.mapping(raw, "turn", where)
        if t is None:
            return None
        w = f"{where}.turn"
        self.keys(t, TURN.names, w)
        detector = self.string(t, "detector", w)
        if detector is not None and detector not in TURN.choices("detector"):
            self.err(t.value_mark("detector"), f"{w}.detector must be one of {', '.join(TURN.choices('detector'))}")
            detector = None

        def whole(key: str) -> int | None:
            lo, hi = TURN.range(key)
            return self.integer(t, key, w, 0, int(lo), int(hi)) if key in t else None

        threshold = self.number(t, "threshold", w, 0.0, *TURN.range("threshold")) if "threshold" in t else None
        return TurnSpec(detector, threshold, whole("max_silence_ms"), whole("entry_wait_ms"))

    def build_branch(self, raw: MDict, where: str, schedules: Mapping[str, Schedule]) -> ScheduleBranch | None:
        b = self.mapping(raw, "schedule", where)
        if b is None:
            return None
        w = f"{where}.schedule"
        self.keys(b, BRANCH.names, w)
        name = self.string(b, "name", w, required=True)
        open_ = self.string(b, "open", w, required=True)
        closed = self.string(b, "closed", w, required=True)
        if name is None or open_ is None or closed is None:
            return None
        if name not in schedules:
            self.err(b.value_mark("name"), f"{w}: unknown schedule {name!r}{suggest(name, schedules)}; declare it "
                                           "under schedules:")
            return None
        emergency = self.string(b, "emergency", w) or schedules[name].emergency.goto or closed
        return ScheduleBranch(schedule=name, open=open_, closed=closed,
                              holiday=self.string(b, "holiday", w) or closed, emergency=emergency)

    def build_routes(self, raw: MDict, where: str, intents: Mapping[str, IntentSpec]) -> tuple[Route, ...]:
        routes_raw = self.mapping(raw, "routes", where)
        if routes_raw is None:
            return ()
        out = []
        for intent, rv in routes_raw.items():
            w = f"{where}.routes.{intent}"
            if intent not in intents:
                self.err(routes_raw.key_mark(intent), f"{where} routes unknown intent {intent!r}"
                                                      f"{suggest(intent, intents)}; declare it under intents:")
                continue
            if isinstance(rv, str):
                out.append(Route(intent=intent, goto=rv))
                continue
            if not isinstance(rv, MDict):
                self.err(routes_raw.value_mark(intent), f"{w} must be a node name or a mapping with goto:")
                continue
            self.keys(rv, ROUTE.names, w)
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
        self.keys(a, ACTION.names, w)
        name = self.string(a, "name", w, required=True)
        if name is None:
            return None
        if name not in self.registry:
            hint = suggest(name, self.registry.names())
            if not hint and self.registry.origin:  # e.g. no plugin enabled: say where actions would come from
                hint = f" (actions come from {self.registry.origin})"
            self.err(a.value_mark("name"), f"{w}: unknown action {name!r}{hint}")
            return None
        spec = self.registry.get(name)
        risk = spec.risk
        declared = self.string(a, "risk", w)
        if declared is not None:
            if declared not in ACTION.choices("risk"):
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
            self.keys(craw, CONFIRM.names, f"{w}.confirm")
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
