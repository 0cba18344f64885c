"""Reading typed values out of a dialplan's positioned YAML, each wrong one reported at its ``file:line:col``.

:class:`TypedReader` is the base of the loader's builders (:mod:`voiceivr.dialplan.sections`, ``nodes``,
``schedules``, ``checks``): it holds the problems found so far and the getters for text, numbers in a range,
booleans, phrase lists, keypad keys, prompts and dates, which report a wrong value and carry on with a default
so that every problem in a file is listed, not just the first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from voiceivr.actions.registry import ActionRegistry
from voiceivr.dialplan.model import UNINTERRUPTIBLE_KINDS, VAR_RE, PromptSpec
from voiceivr.dialplan.schema import PROMPT_KINDS, PROMPT_MAPPING
from voiceivr.yamlpos import Mark, MDict, MList, Problem

DTMF_KEYS = frozenset("0123456789*#")


class Skip(Exception):
    """A value is too broken to build from; the problem is already recorded."""


class TypedReader:
    """Reads typed values out of the positioned YAML; every wrong one becomes a :class:`Problem` at its place."""

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

    def named_entry(self, parent: MDict, name: str, where: str, noun: str, needs: str) -> MDict:
        """One entry of a section keyed by name (``slots: {amount: {...}}``): the name must be an identifier and the
        value a mapping (``needs`` says what it must hold, for the message); else the problem is recorded and the
        entry skipped."""
        if not name.isidentifier():
            self.err(parent.key_mark(name), f"{where}: a {noun} name is letters, digits and _")
            raise Skip
        v = parent[name]
        if not isinstance(v, MDict):
            self.err(parent.value_mark(name), f"{where} must be a mapping with {needs}")
            raise Skip
        return v

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
            self.keys(v, PROMPT_MAPPING.names, where)
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


def suggest(name: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
