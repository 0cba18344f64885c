"""Checks over the whole dialplan once its nodes are built: every target names a node, login is set up
right, the graph (nodes nothing reaches, dead ends, loops that never wait for the caller), duplicate DTMF
keys, and that every {variable} a prompt uses is defined on every path to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from voiceivr.dialplan.model import (
    AGENT,
    GOODBYE,
    RETURN,
    SPECIAL_TARGETS,
    STATES,
    GlobalIntent,
    Node,
    PromptSpec,
    Schedule,
    SlotSpec,
)
from voiceivr.dialplan.nodes import NodeInfo
from voiceivr.dialplan.typed import TypedReader, suggest
from voiceivr.yamlpos import Mark, MDict


class PlanChecks(TypedReader):
    """Checks over the whole plan, once every node is built."""

    def check_targets(self, infos: Mapping[str, NodeInfo], nodes_raw: MDict) -> None:
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
                    self.err(mark, f"node {nid}.{what}: unknown node {target!r}{suggest(target, infos)} "
                                   f"(or one of {', '.join(SPECIAL_TARGETS)})")

    def check_schedule_targets(self, schedules: Mapping[str, Schedule], infos: Mapping[str, NodeInfo],
                               doc: MDict) -> None:
        for name, sched in schedules.items():
            target = sched.emergency.goto
            if target is None or target in infos or target in SPECIAL_TARGETS:
                continue
            raw = doc["schedules"][name]["emergency"]
            self.err(raw.value_mark("goto"), f"schedules.{name}.emergency.goto: unknown node {target!r}"
                                             f"{suggest(target, infos)} (or one of {', '.join(SPECIAL_TARGETS)})")

    def check_login(self, infos: Mapping[str, NodeInfo], login: str | None, doc: MDict) -> None:
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

    def check_graph(self, infos: Mapping[str, NodeInfo], nodes_raw: MDict, start: str, main_menu: str,
                    login: str | None) -> None:
        edges = {nid: [t for t in targets(info.node) if t in infos] for nid, info in infos.items()}
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

    def check_dtmf(self, infos: Mapping[str, NodeInfo], globals_: Mapping[str, GlobalIntent], doc: MDict) -> None:
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

    def check_variables(self, infos: Mapping[str, NodeInfo], vars_: Mapping[str, str],
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


def targets(node: Node) -> list[str]:
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
