"""This source tree's entry points, visible to the tests (and to the processes they start) before a reinstall.

``pip install -e .`` copies setup.cfg's ``[options.entry_points]`` into the environment once; an editable
install does not notice later changes until it is run again (scripts/test does, whenever setup.cfg changes).
When the installed entry points are not this tree's, :func:`ensure` writes a stand-in distribution named
voiceivr carrying this tree's entry points, and puts it first on ``sys.path`` and ``PYTHONPATH``:
importlib.metadata takes the first distribution of a name it finds, so the plugin loader then sees exactly
what setup.cfg declares. With an up-to-date install it does nothing.

    python -m tests.support.entrypoints DIR   # the same for a shell: prints the directory to put first on PYTHONPATH
"""

from __future__ import annotations

import configparser
import importlib.metadata as md
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, dict[str, str]]:
    """setup.cfg's voiceivr entry points: group -> name -> value."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out: dict[str, dict[str, str]] = {}
    for group, text in cfg["options.entry_points"].items():
        if not group.startswith("voiceivr."):
            continue
        for line in text.strip().splitlines():
            name, _, value = line.partition("=")
            out.setdefault(group, {})[name.strip()] = value.strip()
    return out


def installed() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for group in declared():
        for ep in md.entry_points(group=group):
            out.setdefault(group, {})[ep.name] = ep.value
    return out


def write_stand_in(directory: Path) -> Path:
    from voiceivr import __version__

    info = directory / f"voiceivr-{__version__}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: voiceivr\nVersion: {__version__}\n")
    lines = []
    for group, entries in declared().items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return directory


def ensure(directory: Path) -> Path | None:
    """Make this tree's entry points the ones importlib.metadata reports; returns the stand-in's directory, or
    None when the installed ones already are."""
    if all(installed().get(g, {}).get(n) == v for g, entries in declared().items() for n, v in entries.items()):
        return None
    write_stand_in(directory)
    sys.path.insert(0, str(directory))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p)
    return directory


if __name__ == "__main__":
    print(write_stand_in(Path(sys.argv[1]).resolve()))
