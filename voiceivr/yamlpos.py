"""YAML that remembers where every key and value was written, so errors can say ``file:line:col``.

PyYAML's safe loader builds plain dicts and lists and forgets the marks. Here mappings become
:class:`MDict` and sequences :class:`MList`, which carry the position of the container, of each key and of
each value. Scalars stay plain Python values (their position is asked of the container that holds them).
Duplicate keys, which YAML silently collapses, are reported as problems instead.

The text is untrusted (an admin's upload, a file from anywhere), so its size is bounded before anything is
built from it: :data:`MAX_BYTES` of text, :data:`MAX_DEPTH` levels of nesting and :data:`MAX_VALUES` values,
counted both as written and as aliases expand (``&a [*b, *b, ...]`` nine deep is a billion values in 488
bytes), and an alias may not point into itself. Past a limit, :func:`load` raises :class:`YamlSyntaxError`
naming the limit and where it was reached, instead of running out of memory or recursion.

:class:`Problem` is the ``file:line:col: message`` record every checker of an admin's YAML reports with (the
dialplan loader, the webhook-action files). It sits here, at the bottom, so both can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The largest dialplan shipped (the demo plugin's) is 9 KB, 7 levels deep, 660 values (keys included); these leave
# room for IVRs a hundred times that size and keep the worst case to a few tens of MB (tests/test_dialplan_limits).
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 100_000


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based

    @staticmethod
    def of(node: Node) -> Mark:
        return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class MDict(dict[str, Any]):
    """A mapping with the marks of itself, its keys and its values."""

    mark: Mark
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]

    def key_mark(self, key: str) -> Mark:
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key: str) -> Mark:
        return self.value_marks.get(key, self.key_mark(key))


class MList(list[Any]):
    mark: Mark
    item_marks: list[Mark]

    def item_mark(self, index: int) -> Mark:
        return self.item_marks[index] if 0 <= index < len(self.item_marks) else self.mark


@dataclass(frozen=True)
class YamlProblem:
    mark: Mark
    message: str


class YamlSyntaxError(Exception):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _too_many(mark: Mark, how: str) -> YamlSyntaxError:
    return YamlSyntaxError(mark, f"more than {MAX_VALUES:,} values {how}; a dialplan has a few thousand at most")


def _mark(event: Any) -> Mark:
    return Mark(event.start_mark.line + 1, event.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with nesting and size counted while the document is composed.

    PyYAML's composer recurses once per level, so without a depth limit ``[[[[...`` ends in RecursionError.
    An alias composes to the very node it names, so where each alias was written is kept here, by the
    container it is in and its place there (a list index, or the key node of a mapping value).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._composed = 0
        self.alias_marks: dict[tuple[int, int], Mark] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        self._composed += 1
        if self._composed > MAX_VALUES:
            raise _too_many(_mark(event), "in the file")
        if isinstance(event, AliasEvent):
            if parent is not None and index is not None:
                self.alias_marks[_place(parent, index)] = _mark(event)
        elif self._depth >= MAX_DEPTH:
            raise YamlSyntaxError(_mark(event), f"nested more than {MAX_DEPTH} levels deep; a dialplan needs "
                                                "fewer than 10")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _place(parent: Node, index: Any) -> tuple[int, int]:
    return id(parent), index if isinstance(index, int) else id(index)


class _Expansion:
    """What building the values costs once aliases are expanded, and where the builder is now."""

    def __init__(self) -> None:
        self.values = 0
        self.depth = 0
        self.open: set[int] = set()  # ids of the mappings and lists being built (the path to here)
        self.via: Mark | None = None  # the outermost alias on that path: what an expansion error points at


def _construct(loader: _Loader, node: Node, problems: list[YamlProblem], cost: _Expansion,
               alias: Mark | None = None) -> Any:
    cost.values += 1
    if cost.values > MAX_VALUES:
        raise _too_many(cost.via or alias or Mark.of(node), "once its aliases are expanded (an alias bomb?)")
    if isinstance(node, ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # 2026-13-45 read as a date, an integer of 5,000 digits
            what = {"timestamp": "date", "int": "whole number", "float": "number"}.get(
                str(node.tag).rsplit(":", 1)[-1], str(node.tag))
            shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            reason = str(exc).split(":", 1)[0]
            problems.append(YamlProblem(Mark.of(node), f"{shown!r} reads as a {what} but is not a valid one "
                                                       f"({reason}); put it in quotes if it is text"))
            return None
    if id(node) in cost.open:
        raise YamlSyntaxError(alias or Mark.of(node), "an alias refers to the list or mapping that contains it "
                                                      "(it would never end); copy the values instead")
    if cost.depth >= MAX_DEPTH:
        raise YamlSyntaxError(cost.via or Mark.of(node), f"nested more than {MAX_DEPTH} levels deep once its "
                                                         "aliases are expanded; a dialplan needs fewer than 10")
    outermost = cost.via is None and alias is not None
    if outermost:
        cost.via = alias
    cost.open.add(id(node))
    cost.depth += 1
    try:
        return _construct_collection(loader, node, problems, cost)
    finally:
        cost.open.discard(id(node))
        cost.depth -= 1
        if outermost:
            cost.via = None


def _construct_collection(loader: _Loader, node: Node, problems: list[YamlProblem], cost: _Expansion) -> Any:
    aliases = loader.alias_marks
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)
        out = MDict()
        out.mark = Mark.of(node)
        out.key_marks = {}
        out.value_marks = {}
        for key_node, value_node in node.value:
            # Only a scalar is built as a key: a list or mapping key (perhaps an alias of a huge one) never is.
            key = _construct(loader, key_node, problems, cost) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(YamlProblem(Mark.of(key_node), "a key must be a plain word, not a list or mapping"))
                continue
            skey = str(key)
            if skey in out:
                first = out.key_marks[skey]
                problems.append(
                    YamlProblem(Mark.of(key_node), f"duplicate key {skey!r} (first at line {first.line}); "
                                                   "YAML would silently keep only the last one")
                )
            out.key_marks[skey] = Mark.of(key_node)
            out.value_marks[skey] = Mark.of(value_node)
            out[skey] = _construct(loader, value_node, problems, cost, aliases.get(_place(node, key_node)))
        return out
    assert isinstance(node, SequenceNode)
    seq = MList()
    seq.mark = Mark.of(node)
    seq.item_marks = []
    for i, item in enumerate(node.value):
        seq.item_marks.append(Mark.of(item))
        seq.append(_construct(loader, item, problems, cost, aliases.get(_place(node, i))))
    return seq


def load(text: str) -> tuple[Any, list[YamlProblem]]:
    """Parse one YAML document; raise :class:`YamlSyntaxError` with a position if it is not valid YAML or is
    over one of the limits above."""
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(Mark(1, 1), f"{len(text):,} characters; a dialplan may be at most {MAX_BYTES:,} "
                                          "(split it, or check this is the right file)")
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character before it parses anything
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise YamlSyntaxError(Mark(line, col), f"not valid YAML: character U+{code:04X} is not allowed (a control "
                                               "character or a lone surrogate)") from None
    problems: list[YamlProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, problems
        return _construct(loader, node, problems, _Expansion()), problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(where, f"not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Mark(1, 1), f"not valid YAML: {exc}") from None
    except RecursionError:  # a safety net: the limits above are meant to stop every way to get here
        raise YamlSyntaxError(Mark(1, 1), f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
