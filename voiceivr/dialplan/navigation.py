"""Navigation: walking the dialplan's nodes, menus, routing, globals and going back.

Entering a node (through login first when it needs one, and back by the return stack), carrying on with its
slots and action, following routes, gotos and schedule branches (with a backstop on hops without waiting for
the caller), routing a menu answer to an intent, and the globals: repeat, agent, goodbye, main menu, go back.
"""

from __future__ import annotations

from voiceivr.dialplan import hours
from voiceivr.dialplan.confirmation import Confirmation
from voiceivr.dialplan.context import _union
from voiceivr.dialplan.io import Utterance
from voiceivr.dialplan.model import AGENT, GOODBYE, RETURN, Node, ScheduleBranch
from voiceivr.dialplan.router import RoutingDecision

MAX_HOPS = 64  # transitions without waiting for the caller (the loader rejects loops; this is a backstop)


class Navigation(Confirmation):
    """Where the call goes next."""

    # === walking nodes ====================================================================================

    def _enter(self, target: str, reason: str, prefill: str = "") -> None:
        for _ in range(MAX_HOPS):
            nxt = self._enter_once(target, reason, prefill)
            if nxt is None:
                return
            target, reason, prefill = nxt
        self._event("error", reason="too many transitions without waiting for the caller")
        self._to_agent("engine loop guard")

    def _enter_once(self, target: str, reason: str, prefill: str) -> tuple[str, str, str] | None:
        if target == AGENT:
            self._to_agent(reason)
            return None
        if target == GOODBYE:
            self._goodbye(reason)
            return None
        if target == RETURN:
            if self.return_stack:
                back_to, words, flags = self.return_stack.pop()
                self._input_flags = _union(self._input_flags, flags)
                return back_to, "return after login", words
            return self.plan.main_menu, "return (nothing to return to)", ""
        node = self.plan.node(target)
        self._event("transition", **{"from": self.node_id or None, "to": target, "reason": reason})
        if node.requires_login and self.gate.principal() is None and self.plan.login:
            self.return_stack.append((target, prefill, self._input_flags if prefill else ()))
            self._prompt(self.plan.messages.login_first, "prompt")
            return self.plan.login, f"{target} requires login", ""
        self.node_id = target
        self.phase = "menu"
        self.slot = None
        self.action_done = False
        self.no_input_count = self.no_match_count = 0
        self.menu_offered = False
        self.cancel_count = 0
        for s in node.collect:  # a new visit collects afresh: the last transfer's amount is not this one's
            self.slots.pop(s, None)
        self._visit_flags = self._input_flags if prefill else ()
        for p in node.say:
            self._prompt(p)
        if prefill:
            self._fill_from(prefill, node, asked=None)
        return self._advance()

    def _advance(self) -> tuple[str, str, str] | None:
        """Carry on with the current node: ask the next missing slot, run its action, then move on."""
        node = self.plan.node(self.node_id)
        for s in node.collect:
            if s in self.slots:
                continue
            spec = self.plan.slots[s]
            if spec.default is not None:
                self._set_slot(spec, spec.default, "default")
                continue
            self.phase, self.slot = "slot", s
            self._prompt(spec.ask)
            self._listen_for_slot(spec)
            return None
        self.slot = None
        if node.action is not None and not self.action_done:
            return self._request_action(node, node.action)
        return self._continue(node)

    def _continue(self, node: Node) -> tuple[str, str, str] | None:
        if node.schedule is not None:
            return self._branch_on_schedule(node.schedule)
        if node.routes:
            self.phase = "menu"
            self._listen_for_intents(node)
            return None
        if node.goto:
            return node.goto, "goto", ""
        if node.end == "agent":
            self._to_agent("end of dialplan")
        else:
            self._goodbye("end of dialplan")
        return None

    def _branch_on_schedule(self, branch: ScheduleBranch) -> tuple[str, str, str]:
        schedule = self.plan.schedules[branch.schedule]
        reading = hours.state_at(schedule, self.started)
        holiday = reading.holiday
        self._event("schedule", schedule=branch.schedule, state=reading.state,
                    local=reading.local.isoformat(timespec="minutes"), holiday=holiday.name if holiday else None)
        said = schedule.emergency.say if reading.state == "emergency" else \
            holiday.say if holiday is not None and reading.state == "holiday" else None
        if said is not None:
            self._prompt(said)
        return branch.target(reading.state), f"schedule {branch.schedule}: {reading.state}", ""

    def _enter_continue(self) -> None:
        nxt = self._advance()
        if nxt is not None:
            self._enter(*nxt)

    def _resume(self) -> None:
        """Carry on at the current node after a rewind (through login again if the node needs it)."""
        node = self.plan.node(self.node_id)
        if node.requires_login and self.gate.principal() is None and self.plan.login:
            self._enter(self.node_id, reason="resume")
            return
        if node.routes and not node.collect and not node.action:
            for p in node.say:
                self._prompt(p)
        self._enter_continue()

    # === menus and globals ================================================================================

    def _menu_text(self, u: Utterance) -> None:
        node = self.plan.node(self.node_id)
        cands = [r.intent for r in node.routes] + list(self.plan.globals)
        open_text = u.open_text if u.kind == "speech" else ""
        decision = self.router.route(u.text, cands, self._recognition(u), open_text)
        self._intent_event(decision, cands)
        if decision.intent is None:
            self._no_match("no confident intent")
        elif decision.intent in self.plan.globals:
            self._global(decision.intent, decision)
        else:
            # routed on the open transcript: its words, not the grammar's nearest phrase, fill the task's slots
            self._accept_intent(decision.intent, decision, open_text if decision.on_open_text else u.text)

    def _accept_intent(self, intent: str, decision: RoutingDecision, words: str) -> None:
        node = self.plan.node(self.node_id)
        route = next(r for r in node.routes if r.intent == intent)
        if decision.tier == 0 and not words:
            self._event("intent", intent=intent, tier=0, confidence=1.0, cost_s=0.0, via="dtmf")
        self._checkpoint("intent", f"intent {intent}", node=route.goto)
        self._enter(route.goto, reason=f"intent {intent}", prefill=words)

    def _global_for_key(self, digits: str) -> str | None:
        return next((g.name for g in self.plan.globals.values() if g.dtmf and g.dtmf == digits), None)

    def _global(self, name: str, decision: RoutingDecision) -> None:
        if decision.tier == 0 and decision.cost_s == 0.0:
            self._event("intent", intent=name, tier=0, confidence=1.0, cost_s=0.0, via="dtmf")
        self.no_match_count = self.no_input_count = 0
        if name == "repeat":
            self._repeat()
        elif name == "agent":
            self._to_agent("caller asked")
        elif name == "goodbye":
            self._goodbye("caller said goodbye")
        elif name == "main_menu":
            self._abandon("main menu")
            self._drop_unconfirmed()
            self.return_stack.clear()
            self._enter(self.plan.main_menu, reason="main menu")
        elif name == "back":
            self._go_back()

    def _repeat(self) -> None:
        prompts, listen = self._last_listen
        self._event("repeat", prompts=[p.id for p in prompts])
        for p in prompts:
            self._prompt_say(p.text, p.kind, p.interruptible)
            if self.pending is not None and p.kind == "readback":
                # The caller hears the read-back again; a yes must now follow this one.
                self.pending.readback_id = self._say[-1].id
                self.pending.readback_done_at = None
        self._listen = listen

    def _go_back(self) -> None:
        """Undo the last step: within a task, back to its start; otherwise back to the menu the last intent was
        said at."""
        self._abandon("caller went back")
        cp = self._last_confirmed()
        if cp is not None and cp.node == self.node_id and any(not v.confirmed for v in self.slots.values()):
            self._rewind("go back")
            self._resume()
            return
        while self.checkpoints and self.checkpoints[-1].kind != "intent":
            self.checkpoints.pop()
        if not self.checkpoints:
            self._drop_unconfirmed()
            self.return_stack.clear()
            self._enter(self.plan.main_menu, reason="go back")
            return
        cp = self.checkpoints.pop()
        self._restore(cp, cp.origin)
        self._event("rewind", to=f"before {cp.reason}", node=cp.origin, reason="go back", dropped=[])
        self._enter(cp.origin, reason="go back")
