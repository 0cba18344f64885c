"""YAML that remembers where every key and value was written, so errors can say ``file:line:col``.

PyYAML's safe loader builds plain dicts and lists and forgets the marks. Here mappings become
:class:`MDict` and sequences :class:`MList`, which carry the position of the container, of each key and of
each value. Scalars stay plain Python values (their position is asked of the container that holds them).
Duplicate keys, which YAML silently collapses, are reported as problems instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


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


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: _Loader, node: Node, problems: list[YamlProblem]) -> Any:
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)
        out = MDict()
        out.mark = Mark.of(node)
        out.key_marks = {}
        out.value_marks = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
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
            out[skey] = _construct(loader, value_node, problems)
        return out
    if isinstance(node, SequenceNode):
        seq = MList()
        seq.mark = Mark.of(node)
        seq.item_marks = []
        for item in node.value:
            seq.item_marks.append(Mark.of(item))
            seq.append(_construct(loader, item, problems))
        return seq
    assert isinstance(node, ScalarNode)
    return loader.construct_object(node, deep=True)


class YamlSyntaxError(Exception):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def load(text: str) -> tuple[Any, list[YamlProblem]]:
    """Parse one YAML document; raise :class:`YamlSyntaxError` with a position if it is not valid YAML."""
    loader = _Loader(text)
    problems: list[YamlProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, problems
        return _construct(loader, node, problems), problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(where, f"not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Mark(1, 1), f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
