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

This module is the loader's public face (:func:`load_file`, :func:`load_text`, :func:`check_text`,
:class:`DialplanInvalid`) and puts the document together; the work is split by job: the format's declaration
(:mod:`~voiceivr.dialplan.schema`), typed getters with positions (:mod:`~voiceivr.dialplan.typed`), the
dialplan-wide sections (:mod:`~voiceivr.dialplan.sections`), nodes and their actions
(:mod:`~voiceivr.dialplan.nodes`), schedules (:mod:`~voiceivr.dialplan.schedules`) and the whole-plan checks
(:mod:`~voiceivr.dialplan.checks`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from voiceivr import yamlpos
from voiceivr.actions.registry import ActionRegistry
from voiceivr.dialplan.checks import PlanChecks, targets
from voiceivr.dialplan.model import AGENT, Dialplan, Fallback
from voiceivr.dialplan.nodes import NodeBuilder, NodeInfo
from voiceivr.dialplan.schedules import ScheduleBuilder
from voiceivr.dialplan.schema import AGENT_SECTION, DIALPLAN
from voiceivr.errors import VoiceivrError
from voiceivr.yamlpos import Mark, MDict, Problem


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


class _Builder(NodeBuilder, ScheduleBuilder, PlanChecks):
    """Builds the whole document: the sections, the schedules, the nodes, then the whole-plan checks."""

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
        self.keys(doc, DIALPLAN.names, "the dialplan")
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
            self.keys(agent, AGENT_SECTION.names, "agent")
            agent_target = self.string(agent, "target", "agent", required=True) or ""
        intents = self.build_intents(doc)
        globals_ = self.build_globals(doc)
        slots = self.build_slots(doc)
        schedules = self.build_schedules(doc, vars_)

        nodes_raw = self.mapping(doc, "nodes", "the dialplan", required=True)
        infos: dict[str, NodeInfo] = {}
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
        if any(n.node.end == "agent" or AGENT in targets(n.node) for n in infos.values()) and not agent_target:
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
