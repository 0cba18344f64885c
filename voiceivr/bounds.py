"""What values a setting accepts, declared beside it (``setting(6, doc, min=6, max=10)``) and checked when the
settings are loaded, so ``policy.code_digits = 3`` stops the process at start with the setting's name and
where the value came from, instead of issuing three-digit codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from voiceivr.errors import ConfigError


@dataclass(frozen=True)
class Bounds:
    """``min``/``max`` for numbers (inclusive; each item of a list), ``choices`` for a closed set of values.

    Text choices are matched without regard to case or surrounding space and the value becomes the choice's
    own spelling, so code comparing with ``"off"`` also sees ``OFF``.
    """

    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    off: float | None = None  # a number outside min-max that turns the feature off (0 = no limit)

    def describe(self) -> str:
        if self.off is not None:
            return f"{_num(self.off)} (off) or " + Bounds(self.min, self.max, self.choices).describe()
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.min is not None and self.max is not None:
            return f"{_num(self.min)} to {_num(self.max)}"
        if self.min is not None:
            return f"at least {_num(self.min)}"
        return f"at most {_num(self.max)}"

    def check(self, value: Any, name: str, where: str, doc: str) -> Any:
        """``value`` (in its canonical spelling), or a :class:`ConfigError` naming ``name`` and ``where``."""
        if isinstance(value, list):
            return [self.check(v, name, where, doc) for v in value]
        if self.off is not None and _number(value) and value == self.off:
            return value
        if self.choices is not None:
            for choice in self.choices:
                if _same(value, choice):
                    return choice
        elif _number(value) and (self.min is None or value >= self.min) and (self.max is None or value <= self.max):
            return value
        shown = f"{value!r}" if isinstance(value, str) else _num(value)
        raise ConfigError(f"{where}: {name} = {shown} is out of range: it must be {self.describe()}",
                          hint=f"{name}: {doc}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(value: Any, choice: Any) -> bool:
    if isinstance(choice, str):
        return isinstance(value, str) and value.strip().lower() == choice.lower()
    return bool(value == choice) and not isinstance(value, bool)


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
