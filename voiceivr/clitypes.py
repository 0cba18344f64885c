"""Option types shared by the commands: values click's own types let through (``nan``, ``inf``, ``-5`` seconds)
are refused as usage errors (exit 2) naming the option, before anything starts."""

from __future__ import annotations

import math

import click


class Finite(click.ParamType):
    """A finite number from ``lo`` to ``hi`` (click.FloatRange lets ``nan`` through: it compares false)."""

    name = "NUMBER"

    def __init__(self, lo: float, hi: float, unit: str = "") -> None:
        self.lo, self.hi, self.unit = lo, hi, unit

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and self.lo <= number <= self.hi):
            unit = f" {self.unit}" if self.unit else ""
            self.fail(f"{value!r} is not a number from {self.lo:g} to {self.hi:g}{unit}", param, ctx)
        return number
