"""``voiceivr plugins`` (what is installed, what is enabled, what each plugin brings), and the commands the
enabled plugins mount on the CLI (``voiceivr <plugin> ...``)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from voiceivr import plugins as pl
from voiceivr.app import AppContext, pass_app
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings, load_settings


def _enabled_names() -> list[str]:
    """``plugins.enabled`` as configured; nothing when the settings do not load (the command that runs will
    report that error)."""
    try:
        return list(load_settings()[0].plugins.enabled)
    except VoiceivrError:
        return []


def mounted_names(builtin: set[str]) -> list[str]:
    """Names of the enabled plugins that have commands (one a built-in command already has is not mounted)."""
    try:
        names = [d.name for d in pl.declared(pl.COMMANDS)]
    except Exception:  # a broken installation must not break `voiceivr --help`
        return []
    enabled = set(_enabled_names())
    return [n for n in names if n in enabled and n not in builtin]


def _failing(name: str, error: VoiceivrError) -> click.Command:
    """A command that only reports why the plugin's commands cannot run (listed in --help with the reason)."""

    def run() -> None:
        raise error

    return click.Command(name, callback=run, help=f"(unavailable: {error})", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def plugin_command(name: str) -> click.Command | None:
    """The command of plugin ``name``, if it is installed; one that explains itself if it is installed but
    not enabled, or broken."""
    try:
        ep = pl.entry_point(pl.COMMANDS, name)
    except pl.PluginError as exc:
        return _failing(name, exc)
    if ep is None:
        return None
    if name not in _enabled_names():
        return _failing(name, pl.PluginError(f"plugin {name!r} is installed but not enabled",
                                             hint=pl.ENABLE_HINT.replace("demo", name)))
    try:
        command = pl.load(pl.COMMANDS, name)
    except pl.PluginError as exc:
        return _failing(name, exc)
    if not isinstance(command, click.Command):
        return _failing(name, pl.describe_error(name, pl.COMMANDS, f"is a {type(command).__name__}, not a click "
                                                "command or group"))
    return command


# ------------------------------------------------------------------------------------------- voiceivr plugins


def _describe_actions(name: str, settings: Settings) -> list[dict[str, Any]]:
    from voiceivr.actions.registry import plugin_actions

    out = []
    for action in plugin_actions(settings, [name]).get(name, []):
        out.append({
            "name": action.name, "risk": action.risk, "description": action.description,
            "params": [{"name": p.name, "type": p.type, "required": p.required, "secret": p.secret}
                       for p in action.params],
            "returns": dict(action.returns), "requires_login": action.requires_login,
            "authenticates": action.authenticates,
        })
    return out


def _describe_backends(path: str) -> dict[str, Any]:
    """The backends file's backends and actions as ``voiceivr plugins`` shows them; its problems as errors."""
    from voiceivr.actions.backends import BackendsInvalid, load_backends

    out: dict[str, Any] = {"file": path, "backends": [], "actions": [], "identity": "", "errors": []}
    try:
        spec = load_backends(path)
    except BackendsInvalid as exc:
        out["errors"] = [str(p) for p in exc.problems]
        return out
    out["backends"] = [{"name": b.name, "url": b.url, "secret": b.secret_ref} for b in spec.backends.values()]
    out["actions"] = [{
        "name": a.name, "risk": a.risk, "description": a.description, "backend": a.backend, "path": a.path,
        "params": [{"name": p.name, "type": p.type, "required": p.required, "secret": p.secret} for p in a.params],
        "returns": {f.name: f.type for f in a.reply}, "requires_login": a.requires_login,
        "authenticates": a.authenticates,
    } for a in spec.actions]
    if spec.identity is not None:
        out["identity"] = (f"backend {spec.identity.backend!r}: contact from the login reply"
                           + (f", TOTP checked at {spec.identity.totp}" if spec.identity.totp else ", no TOTP"))
    return out


def _describe(name: str, settings: Settings) -> dict[str, Any]:
    """What plugin ``name`` declares and, group by group, whether it loads (errors as one line each)."""
    from voiceivr.db.plugins import PluginSchema

    entry: dict[str, Any] = {"name": name, "enabled": name in settings.plugins.enabled, "errors": []}
    entry["entry_points"] = {d.group: d.value for d in pl.declared() if d.name == name}
    entry["distributions"] = sorted({d.dist for d in pl.declared() if d.name == name})
    try:
        if pl.ACTIONS in entry["entry_points"]:
            entry["actions"] = _describe_actions(name, settings)
        if pl.IDENTITY in entry["entry_points"]:
            factory = pl.load(pl.IDENTITY, name)
            if not callable(factory):
                raise pl.describe_error(name, pl.IDENTITY, "is not callable; it must be a function "
                                        "(settings, engine) -> IdentityProvider")
            doc = (getattr(factory, "__doc__", None) or "").strip()
            entry["identity"] = doc.splitlines()[0] if doc else entry["entry_points"][pl.IDENTITY]
        if pl.SCHEMA in entry["entry_points"]:
            schema = pl.load(pl.SCHEMA, name)
            if not isinstance(schema, PluginSchema):
                raise pl.describe_error(name, pl.SCHEMA, f"is a {type(schema).__name__}, not a "
                                        "voiceivr.db.plugins.PluginSchema")
            entry["schema"] = {"branch": schema.branch, "tables": sorted(schema.metadata.tables),
                               "migrations": str(schema.migrations), "seed": schema.seed is not None}
        if pl.COMMANDS in entry["entry_points"]:
            command = pl.load(pl.COMMANDS, name)
            if not isinstance(command, click.Command):
                raise pl.describe_error(name, pl.COMMANDS, f"is a {type(command).__name__}, not a click command")
            entry["commands"] = (sorted(command.commands) if isinstance(command, click.Group) else [name])
    except VoiceivrError as exc:
        entry["errors"].append(str(exc))
    return entry


def _params(action: dict[str, Any]) -> str:
    parts = []
    for p in action["params"]:
        flags = "".join((", optional" if not p["required"] else "", ", secret" if p["secret"] else ""))
        parts.append(f"{p['name']}: {p['type']}{flags}")
    return ", ".join(parts)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def plugins(app: AppContext, as_json: bool) -> None:
    """The installed plugins, which are enabled (plugins.enabled), and what each brings: actions (risk,
    parameters), identity provider, tables, commands. Exits 1 if an enabled plugin is missing or broken."""
    settings = app.settings
    names = pl.installed_names()
    described = [_describe(n, settings) for n in names]
    missing = [n for n in settings.plugins.enabled if n not in names]
    backends = _describe_backends(settings.plugins.backends) if settings.plugins.backends else None
    if as_json:
        click.echo(json.dumps({"enabled": list(settings.plugins.enabled), "missing": missing,
                               "plugins": described, "backends": backends}, indent=2))
    else:
        if not described:
            click.echo("no plugins installed")
        for d in described:
            state = "enabled" if d["enabled"] else "installed, not enabled"
            click.echo(f"{d['name']} ({state}; {', '.join(d['distributions'])})")
            for group, value in d["entry_points"].items():
                click.echo(f"  {group} = {value}")
            for a in d.get("actions", []):
                who = " [authenticates]" if a["authenticates"] else (" [login]" if a["requires_login"] else "")
                click.echo(f"    action {a['name']:<18} {a['risk']:<4} ({_params(a)}){who}")
            if d.get("identity"):
                click.echo(f"    identity provider: {d['identity']}")
            if "schema" in d:
                s = d["schema"]
                click.echo(f"    tables ({s['branch']} branch): {', '.join(s['tables'])}")
            if d.get("commands"):
                click.echo(f"    commands: voiceivr {d['name']} {'|'.join(d['commands'])}")
            for err in d["errors"]:
                click.echo(f"  error: {err}")
        for n in missing:
            click.echo(f"{n} (enabled, but not installed)")
        if backends is not None:
            click.echo(f"backends file {backends['file']} (plugins.backends)")
            for b in backends["backends"]:
                click.echo(f"  backend {b['name']:<17} {b['url']} (secret from {b['secret']})")
            for a in backends["actions"]:
                who = " [authenticates]" if a["authenticates"] else (" [login]" if a["requires_login"] else "")
                click.echo(f"    action {a['name']:<18} {a['risk']:<4} ({_params(a)}){who}")
            if backends["identity"]:
                click.echo(f"    identity provider: {backends['identity']}")
            for err in backends["errors"]:
                click.echo(f"  error: {err}")
    broken = [d["name"] for d in described if d["enabled"] and d["errors"]]
    if missing or broken or (backends is not None and backends["errors"]):
        sys.exit(1)
