"""How a setting is declared: ``setting()``, a dataclass field carrying its documentation, whether it is
secret, and the values it accepts (a :class:`~voiceivr.bounds.Bounds`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from voiceivr.bounds import Bounds


def setting(default: Any, doc: str, *, secret: bool = False, min: float | None = None, max: float | None = None,
            choices: tuple[Any, ...] | None = None, off: float | None = None) -> Any:
    """A dataclass field with its documentation, whether it must be masked when shown, and the values it
    accepts: ``min``/``max`` (inclusive) for a number or each number of a list, ``choices`` for a closed set,
    ``off`` for the one number outside the range that turns the feature off.
    ``load_settings`` refuses anything else, naming the setting and where the value came from."""
    bounds = Bounds(min, max, choices, off) if (min, max, choices) != (None, None, None) else None
    metadata = {"doc": doc, "secret": secret, "bounds": bounds}
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=default, metadata=metadata)
