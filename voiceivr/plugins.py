"""Plugins: code from installed packages, found through entry points, used only when configuration names it.

A plugin is a *name*: the entry points of that name in voiceivr's groups, declared by any installed
distribution (``[options.entry_points]`` in its setup.cfg, ``[project.entry-points."voiceivr.actions"]`` in a
pyproject.toml). Each group has one interface, checked where it is used:

* ``voiceivr.actions``: a callable ``(settings) -> Iterable[Action]`` (:mod:`voiceivr.actions.registry`);
* ``voiceivr.identity``: a callable ``(settings, engine) -> IdentityProvider`` (:mod:`voiceivr.policy.identity`);
* ``voiceivr.schema``: a :class:`~voiceivr.db.plugins.PluginSchema`, its tables and Alembic branch
  (:mod:`voiceivr.db.plugins`);
* ``voiceivr.commands``: a click command or group, mounted as ``voiceivr <name>`` (:mod:`voiceivr.cli`).

Installing a package runs nothing: a node uses the plugins ``plugins.enabled`` lists, in that order, and no
others (a contact centre's IVR moves money; which code may run on its calls is the operator's decision, made
in one place). ``voiceivr plugins`` lists what is installed and what is enabled.

This module only finds and imports entry points and turns every way that can fail into one
:class:`PluginError` line naming the plugin; what an object must be is checked by the floor that uses it.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voiceivr.errors import ConfigError, VoiceivrError

GROUPS: tuple[str, ...] = ("voiceivr.actions", "voiceivr.identity", "voiceivr.schema", "voiceivr.commands")
ACTIONS, IDENTITY, SCHEMA, COMMANDS = GROUPS

ENABLE_HINT = "set plugins.enabled in voiceivr.toml or VOICEIVR_PLUGINS_ENABLED (e.g. VOICEIVR_PLUGINS_ENABLED=demo)"


class PluginError(VoiceivrError):
    """A plugin that is named but cannot be used: not installed, declared twice, broken on import, or of the
    wrong kind. The message names the plugin and its entry point."""


@dataclass(frozen=True)
class Declared:
    """One entry point of one plugin, as installed (nothing imported yet)."""

    name: str
    group: str
    value: str  # "package.module:attribute"
    dist: str  # the distribution that declares it, "name version"

    def describe(self) -> str:
        return f"{self.group} = {self.value} (from {self.dist})"


# The installed entry points of voiceivr's groups, read once per process: reading them walks every
# distribution on sys.path (some 10 ms each time here). Packages installed while a process runs are seen by
# the next process; tests that install one reset it (tests/test_plugins.py).
_cache: dict[str, list[md.EntryPoint]] | None = None


def _installed(group: str) -> list[md.EntryPoint]:
    global _cache
    if _cache is None:
        _cache = {g: list(md.entry_points(group=g)) for g in GROUPS}
    return _cache.get(group, [])


def _dist_label(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def declared(group: str | None = None) -> list[Declared]:
    """Every voiceivr entry point installed (in ``group``, or in all groups), sorted by group and name."""
    groups = (group,) if group else GROUPS
    found = [Declared(ep.name, ep.group, ep.value, _dist_label(ep)) for g in groups for ep in _installed(g)]
    return sorted(found, key=lambda d: (GROUPS.index(d.group) if d.group in GROUPS else 99, d.name, d.dist))


def installed_names() -> list[str]:
    """Names of the installed plugins (in any group)."""
    return sorted({d.name for d in declared()})


def check_names(names: Sequence[str]) -> None:
    """Refuse an enabled name that no installed package declares, or one enabled twice: a typo in
    ``plugins.enabled`` must stop the node, not leave it running without the actions the operator meant."""
    seen: set[str] = set()
    known = installed_names()
    for name in names:
        if name in seen:
            raise ConfigError(f"plugins.enabled names plugin {name!r} twice")
        seen.add(name)
        if name not in known:
            raise ConfigError(
                f"plugins.enabled names {name!r}, but no installed package declares a plugin of that name",
                hint=f"installed plugins: {', '.join(known) or 'none'} (`voiceivr plugins` lists them; a "
                     "plugin installed from a source tree needs `pip install -e .` again after its entry points "
                     "change)",
            )


def entry_point(group: str, name: str) -> md.EntryPoint | None:
    """The one entry point ``name`` in ``group``, or None; two distributions declaring it is an error."""
    eps = [ep for ep in _installed(group) if ep.name == name]
    if len(eps) > 1:
        raise PluginError(
            f"plugin {name!r}: {group} is declared by {len(eps)} installed packages "
            f"({'; '.join(f'{ep.value} from {_dist_label(ep)}' for ep in eps)})",
            hint="uninstall one of them",
        )
    return eps[0] if eps else None


def load(group: str, name: str) -> object:
    """Import the object entry point ``name`` of ``group`` names. Every failure is one line naming the
    plugin: a plugin's bug must not look like voiceivr's, nor take a traceback to find."""
    ep = entry_point(group, name)
    if ep is None:
        raise PluginError(f"plugin {name!r} has no entry point in {group}")
    where = f"plugin {name!r} ({group} = {ep.value}, from {_dist_label(ep)})"
    try:
        return ep.load()
    except ModuleNotFoundError as exc:
        raise PluginError(f"{where}: cannot import {exc.name!r}",
                          hint="is the package installed in this environment?") from None
    except AttributeError as exc:
        raise PluginError(f"{where}: {exc}") from None
    except Exception as exc:  # an import-time bug in the plugin: its type and message, on one line
        raise PluginError(f"{where}: importing it raised {type(exc).__name__}: {exc}") from None


def enabled(group: str, names: Iterable[str]) -> list[tuple[str, object]]:
    """The objects of the enabled plugins that declare ``group``, in ``plugins.enabled`` order. A plugin that
    does not declare this group is skipped (a plugin with actions need not have tables)."""
    names = list(names)
    check_names(names)
    return [(name, load(group, name)) for name in names if entry_point(group, name) is not None]


def describe_error(name: str, group: str, what: str) -> PluginError:
    """An object of the wrong kind: ``what`` says what it should have been."""
    ep = entry_point(group, name)
    value = f" = {ep.value}" if ep is not None else ""
    return PluginError(f"plugin {name!r} ({group}{value}): {what}")
