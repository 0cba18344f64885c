"""One call's context: the state a :class:`~voiceivr.dialplan.engine.Conversation` keeps, and the primitives
every other part of the engine builds on.

Owns the per-call state (phase, node, slots, results, checkpoints, the return stack, the history and trace, the
request pending on the safe path) and the step being built: prompts are queued and trace events recorded here,
templates rendered, checkpoints taken and rewound to. The other parts (listening, filling, confirmation,
navigation) are layered on :class:`CallContext` in that order, each a mixin over the same state; the engine's
:class:`~voiceivr.dialplan.engine.Conversation` is the top of the stack and takes the inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from voiceivr.actions.registry import ActionRegistry
from voiceivr.dialplan.io import Listen, Say, Step, TraceEvent, Transfer, Utterance
from voiceivr.dialplan.model import UNINTERRUPTIBLE_KINDS, VAR_RE, ActionCall, Dialplan, Fallback, Node, PromptSpec
from voiceivr.dialplan.router import IntentRouter, RoutingDecision
from voiceivr.dialplan.slots import Money, spoken
from voiceivr.policy.gate import ActionRequest, CallGate, Channel, Decision, Evidence

Phase = Literal["idle", "menu", "slot", "confirm", "channel", "code", "ended"]


@dataclass(frozen=True)
class HistoryEntry:
    role: Literal["agent", "caller"]
    text: str
    at: float
    prompt_id: str = ""
    cut: bool = False  # the caller heard only this much of the prompt


# --- per-call state ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotFill:
    value: Any
    confirmed: bool = False
    source: str = "speech"  # speech | dtmf | default
    flagged: tuple[str, ...] = ()  # injection-filter findings of the input the value came from


# Where to go back to after a detour through login: (node, the words that sent the caller there, their
# injection-filter findings -- the words may fill slots of a high action on the way back).
Return = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class Checkpoint:
    kind: Literal["intent", "confirmed", "action"]
    node: str  # where the conversation resumes after a rewind
    origin: str  # where it was when this was confirmed (for an intent: the menu it was said at)
    slots: Mapping[str, SlotFill]
    results: Mapping[str, Mapping[str, Any]]
    return_stack: tuple[Return, ...]
    reason: str  # the intent or action that was confirmed
    at: float


@dataclass
class _Pending:
    """A request on the safe path."""

    request: ActionRequest
    decision: Decision
    call: ActionCall
    readback_id: str
    readback_text: str
    readback_done_at: float | None = None
    confirmed: bool = False
    confirm_misses: int = 0
    channel: Channel | None = None
    code_misses: int = 0


@dataclass(frozen=True)
class ConversationOptions:
    words_per_second: float = 2.5  # only for estimating how long a prompt takes, in simulations
    code_min_digits: int = 4
    code_max_digits: int = 10


class CallContext:
    """The state of one call and the step being built (see the module docstring)."""

    if TYPE_CHECKING:
        # Navigation's (voiceivr.dialplan.navigation), declared here for the parts below it that hand the call back
        # to the walk of the dialplan: after a slot is filled, a read-back answered, an action run or a global said.
        def _enter(self, target: str, reason: str, prefill: str = "") -> None: ...
        def _enter_continue(self) -> None: ...
        def _continue(self, node: Node) -> tuple[str, str, str] | None: ...
        def _resume(self) -> None: ...
        def _global(self, name: str, decision: RoutingDecision) -> None: ...

    def __init__(
        self,
        dialplan: Dialplan,
        gate: CallGate,
        router: IntentRouter,
        *,
        call_id: str,
        today: dt.date | None = None,
        now: dt.datetime | None = None,
        registry: ActionRegistry | None = None,
        options: ConversationOptions | None = None,
    ) -> None:
        self.plan = dialplan
        self.gate = gate
        self.router = router
        self.call_id = call_id
        self.today = today or dt.date.today()
        # The call's start: every schedule: node reads the hours at this moment, so a caller who got in at
        # 16:59 is not turned away at 17:00 mid-call, and a replay or simulation always takes the same branch.
        self.started = now if now is not None else dt.datetime.now(dt.UTC)
        if self.started.tzinfo is None:
            raise ValueError("Conversation(now=...) must be an aware datetime (give it a time zone)")
        self.registry = registry
        self.options = options or ConversationOptions()
        self.phase: Phase = "idle"
        self.node_id = ""
        self.slot: str | None = None
        self.slots: dict[str, SlotFill] = {}
        self.results: dict[str, Mapping[str, Any]] = {}
        self.checkpoints: list[Checkpoint] = []
        self.return_stack: list[Return] = []
        self.history: list[HistoryEntry] = []
        self.trace: list[TraceEvent] = []
        self.pending: _Pending | None = None
        self.action_done = False  # the current node's action ran on this visit
        self.no_input_count = 0
        self.no_match_count = 0
        self.menu_offered = False
        self.cancel_count = 0
        self._prompt_seq = 0
        self._queued: dict[str, Say] = {}
        self._kinds: dict[str, str] = {}  # prompt id -> kind, for inputs that refer to a prompt after it played
        self._last_listen: tuple[tuple[Say, ...], Listen | None] = ((), None)
        self._seen_ids: set[str] = set()
        self._last_input: tuple[str, float, float] | None = None
        self._last_input_end = float("-inf")
        self._last_evidence = Evidence(kind="text", text="")
        # Injection-filter findings of what the current step acts on (the input, and words carried over from
        # before a login), and of the inputs that led to the current node visit: they travel into the
        # evidence of any action this visit requests, so flagged text never silently fills a high action.
        self._input_flags: tuple[str, ...] = ()
        self._visit_flags: tuple[str, ...] = ()
        # The step being built
        self._say: list[Say] = []
        self._events: list[TraceEvent] = []
        self._listen: Listen | None = None
        self._transfer: Transfer | None = None
        self._hangup = False
        self._now = 0.0

    # === step bookkeeping =================================================================================

    def _begin(self, at: float) -> None:
        self._now = at
        self._input_flags = ()
        self._say, self._events, self._listen, self._transfer, self._hangup = [], [], None, None, False

    def _finish(self) -> Step:
        node = self.plan.nodes.get(self.node_id)
        if self._listen is not None and self._listen.turn is None and node is not None and node.turn is not None:
            self._listen = dataclasses.replace(self._listen, turn=node.turn)  # the node's own end-of-turn rules
        step = Step(tuple(self._say), self._listen, self._transfer, self._hangup, tuple(self._events))
        if self._listen is not None:
            self._last_listen = (tuple(s for s in self._say if s.kind not in ("info", "disclosure")), self._listen)
        return step

    def _ignored(self, what: str, why: str) -> Step:
        self._event("ignored", input=what, reason=why)
        return self._finish()

    def _event(self, event_kind: str, /, **data: Any) -> None:
        ev = TraceEvent(event_kind, self._now, data)
        self.trace.append(ev)
        self._events.append(ev)

    def _prompt_say(self, text: str, kind: str, interruptible: bool = True) -> None:
        if not text.strip():
            return
        self._prompt_seq += 1
        say = Say(f"p{self._prompt_seq}", text, kind, interruptible and kind not in UNINTERRUPTIBLE_KINDS)
        self._queued[say.id] = say
        self._kinds[say.id] = kind
        self._say.append(say)
        self._event("say", id=say.id, kind=kind, interruptible=say.interruptible, text=text)

    def _prompt(self, template: str | PromptSpec, kind: str | None = None, extra: Mapping[str, Any] | None = None
                ) -> None:
        spec = template if isinstance(template, PromptSpec) else PromptSpec(template)
        self._prompt_say(self._render(spec.text, extra), kind or spec.kind, spec.interruptible)

    # === rendering ========================================================================================

    def _spoken_slot(self, name: str) -> str:
        fill = self.slots.get(name)
        if fill is None:
            return ""
        spec = self.plan.slots[name]
        if spec.type == "choice":
            opt = next((o for o in spec.options if o.key == fill.value), None)
            return opt.say if opt and opt.say else str(fill.value)
        return spoken(fill.value)

    def _render(self, text: str, extra: Mapping[str, Any] | None = None) -> str:
        extra = extra or {}

        def sub(m: re.Match[str]) -> str:
            name, fld = m.group(1), m.group(2)
            if fld is None and name in extra:
                return str(extra[name])
            if fld is None and name in self.plan.vars:
                return self.plan.vars[name]
            if fld is None and name in self.slots and not self.plan.slots[name].secret:
                return self._spoken_slot(name)
            if fld is not None and name in self.results and fld in self.results[name]:
                return spoken(self.results[name][fld])
            return ""  # the loader proved every variable is defined on every path; never speak a raw brace

        out = VAR_RE.sub(sub, text.replace("{{", "\x00").replace("}}", "\x01"))
        return " ".join(out.replace("\x00", "{").replace("\x01", "}").split())

    def _shown_value(self, name: str, value: Any) -> Any:
        spec = self.plan.slots.get(name)
        if spec is not None and spec.secret:
            return "*" * len(str(value))
        if isinstance(value, Money):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    # === checkpoints ======================================================================================

    def _checkpoint(self, kind: Literal["intent", "confirmed", "action"], reason: str, node: str | None = None
                    ) -> None:
        cp = Checkpoint(kind, node or self.node_id, self.node_id, {k: v for k, v in self.slots.items() if v.confirmed},
                        dict(self.results), tuple(self.return_stack), reason, self._now)
        self.checkpoints.append(cp)
        self._event("checkpoint", reason=reason, node=cp.node)

    def _last_confirmed(self) -> Checkpoint | None:
        """The last confirmed intent (or confirmed read-back): what a correction rewinds to. Checkpoints after
        actions (a login on the way) only mark history."""
        return next((c for c in reversed(self.checkpoints) if c.kind != "action"), None)

    def _rewind(self, reason: str) -> None:
        """Back to the last confirmed intent: the slots filled since are dropped."""
        cp = self._last_confirmed()
        if cp is None:
            self._drop_unconfirmed()
            self.node_id = self.plan.main_menu
            self._event("rewind", to="start", node=self.node_id, reason=reason, dropped=[])
        else:
            dropped = sorted(k for k in self.slots if k not in cp.slots)
            self._restore(cp, cp.node)
            self._event("rewind", to=cp.reason, node=cp.node, reason=reason, dropped=dropped)
        self.action_done = False
        self.slot = None
        self.phase = "menu"

    def _restore(self, cp: Checkpoint, node: str) -> None:
        self.slots = dict(cp.slots)
        self.results = dict(cp.results)
        self.return_stack = list(cp.return_stack)
        self.node_id = node
        self.action_done = False
        self.slot = None
        self.phase = "menu"

    def _drop_unconfirmed(self) -> None:
        self.slots = {k: v for k, v in self.slots.items() if v.confirmed}

    # === the gate, the router and the fallbacks in force ==================================================

    def _abandon(self, reason: str) -> None:
        if self.pending is not None:
            self.gate.abandon(self.pending.request.request_id, reason)
            self._event("gate", call="abandon", request_id=self.pending.request.request_id, reason=reason)
            self.pending = None

    def _fallback(self) -> Fallback:
        return self.plan.node(self.node_id).fallback if self.node_id else self.plan.fallback

    @staticmethod
    def _recognition(u: Utterance) -> float:
        """How sure the recogniser is of the words: spoken words carry its calibrated confidence."""
        return u.confidence if u.kind == "speech" else 1.0

    def _route_globals(self, text: str, cheap_only: bool, recognition: float = 1.0) -> RoutingDecision | None:
        cands = list(self.plan.globals)
        if not cands:
            return None
        decision = self.router.route(text, cands, recognition)
        if decision.intent is None or (cheap_only and (decision.tier or 0) > 1):
            return None
        self._intent_event(decision, cands)
        return decision

    def _intent_event(self, decision: RoutingDecision, cands: Sequence[str]) -> None:
        self._event(
            "intent" if decision.intent else "intent_unsure",
            intent=decision.intent, tier=decision.tier, confidence=round(decision.confidence, 4),
            cost_s=round(decision.cost_s, 6),
            tiers=[{"tier": t.tier, "guess": t.intent, "confidence": t.confidence, "accepted": t.accepted,
                    "cost_s": round(t.cost_s, 6), "runner_up": t.runner_up} for t in decision.tiers],
        )


def _union(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x for g in groups for x in g))
