"""Plugins found through real entry points: a contact centre's own package (written here as an installed
distribution on sys.path), the demo as setup.cfg declares it, every way a plugin can be broken, and the core
never reaching for the demo, the harnesses or the stand-ins itself."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import entrypoints
from tests.support.plugins import ACME, fake_distribution
from voiceivr import plugins as pl
from voiceivr.actions.catalog import plugin_registry
from voiceivr.cli import cli
from voiceivr.dialplan.loader import DialplanInvalid, load_file, load_text
from voiceivr.errors import ConfigError
from voiceivr.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

PLAN = """
name: orders
start: menu
intents:
  status:
    examples: [where is my order, track my order]
    keywords: [order, track]
slots:
  order:
    type: digits
    length: 6
    ask: What is the order number?
nodes:
  menu:
    say: Ask me where your order is.
    routes:
      status: {goto: status, dtmf: "1"}
  status:
    collect: [order]
    action:
      name: lookup_order
      params: {order: "{order}"}
      save_as: found
      success: It is {found.status}.
      failure: Sorry, I can't find it.
    end: hangup
"""


def _settings(*names: str) -> Settings:
    s = Settings()
    s.plugins.enabled = list(names)
    return s


def test_an_installed_plugin_does_nothing_until_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch)
    assert "acme" in pl.installed_names()
    assert "lookup_order" not in plugin_registry(_settings())
    assert "lookup_order" not in plugin_registry(_settings("demo"))
    registry = plugin_registry(_settings("demo", "acme"))
    assert {"login", "transfer_funds", "lookup_order", "refund"} <= set(registry.names())
    assert registry.get("refund").risk == "high"
    plan = load_text(PLAN, "orders.yaml", plugin_registry(_settings("acme")))
    assert plan.name == "orders"


def test_a_dialplan_naming_an_action_of_no_enabled_plugin_says_where_actions_come_from() -> None:
    with pytest.raises(DialplanInvalid) as exc:
        load_file(ROOT / "dialplans" / "bank.yaml", plugin_registry(_settings()))
    (unknown, *_) = [str(p) for p in exc.value.problems if "unknown action 'login'" in str(p)]
    assert unknown.startswith(str(ROOT / "dialplans" / "bank.yaml") + ":")  # file:line:col, as every problem
    assert "(actions come from no plugin: none is enabled" in unknown and "VOICEIVR_PLUGINS_ENABLED" in unknown


def test_validate_uses_the_enabled_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch)
    plan = tmp_path / "orders.yaml"
    plan.write_text(PLAN)
    runner = CliRunner()
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "acme")
    assert runner.invoke(cli, ["dialplan", "validate", str(plan)]).exit_code == 0
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "demo")
    bad = runner.invoke(cli, ["dialplan", "validate", str(plan)])
    assert bad.exit_code == 1 and "unknown action 'lookup_order'" in bad.output


@pytest.mark.parametrize("source, extra, message", [
    (ACME.replace("import click", "import click\nimport acme_missing_dependency"), {},
     "cannot import 'acme_missing_dependency'"),
    (ACME + "\nraise RuntimeError('config file not found')\n", {},
     "importing it raised RuntimeError: config file not found"),
    (ACME.replace("def actions(settings):", "def actions_renamed(settings):"), {}, "has no attribute 'actions'"),
    (ACME + "\nactions = ['lookup_order']\n", {}, "is not callable"),
    (ACME + "\ndef actions(settings):\n    return ['lookup_order']\n", {},
     "returned str, not voiceivr.actions.registry.Action"),
    (ACME + "\ndef actions(settings):\n    return 1 / 0\n", {}, "raised ZeroDivisionError: division by zero"),
])
def test_a_broken_plugin_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                               extra: dict[str, str], message: str) -> None:
    fake_distribution(tmp_path, monkeypatch, source=source, extra=extra)
    with pytest.raises(pl.PluginError) as exc:
        plugin_registry(_settings("acme"))
    text = str(exc.value)
    assert text.startswith("plugin 'acme' (voiceivr.actions = acme_ivr:actions") and message in text
    assert "\n" not in text
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "acme")
    listed = CliRunner().invoke(cli, ["plugins"])
    assert listed.exit_code == 1 and "error: plugin 'acme'" in listed.output and "Traceback" not in listed.output


def test_two_plugins_with_one_action_name_and_one_name_from_two_packages(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, source=ACME.replace('"lookup_order", "low"', '"login", "low"'))
    with pytest.raises(pl.PluginError, match="action 'login' is provided by two enabled plugins: 'demo' and 'acme'"):
        plugin_registry(_settings("demo", "acme"))
    fake_distribution(tmp_path, monkeypatch, dist="acme-ivr-fork")
    with pytest.raises(pl.PluginError, match=r"plugin 'acme': voiceivr.actions is declared by 2 installed packages"):
        plugin_registry(_settings("acme"))


def test_enabling_what_is_not_installed_stops_the_node() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.enabled names 'demox', but no installed package declares") as exc:
        plugin_registry(_settings("demo", "demox"))
    assert "installed plugins: demo" in (exc.value.hint or "")
    with pytest.raises(ConfigError, match="names plugin 'demo' twice"):
        plugin_registry(_settings("demo", "demo"))


def test_the_plugins_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, identity=True, commands=True)
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "demo")
    runner = CliRunner()
    out = runner.invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "demo (enabled; voiceivr " in out.output and "acme (installed, not enabled; acme-ivr 1.0)" in out.output
    assert "action transfer_funds     high (amount: money, to: str, from: str, optional) [login]" in out.output
    assert "action login              low  (account_number: digits, pin: digits, secret) [authenticates]" in out.output
    assert "identity provider: Acme's customer directory." in out.output
    data = json.loads(runner.invoke(cli, ["plugins", "--json"]).output)
    acme = next(p for p in data["plugins"] if p["name"] == "acme")
    assert acme["enabled"] is False and [a["name"] for a in acme["actions"]] == ["lookup_order", "refund"]
    assert acme["entry_points"] == {pl.ACTIONS: "acme_ivr:actions", pl.IDENTITY: "acme_ivr:identity",
                                    pl.COMMANDS: "acme_ivr:cli"}
    # Its commands are not mounted until it is enabled, and saying so is the answer.
    hidden = runner.invoke(cli, ["acme", "hello"])
    assert hidden.exit_code == 1 and "plugin 'acme' is installed but not enabled" in hidden.output
    assert "acme" not in runner.invoke(cli, ["--help"]).output
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "demo,acme")
    assert runner.invoke(cli, ["acme", "hello"]).output == "hello from acme\n"
    assert "Acme's own commands." in runner.invoke(cli, ["--help"]).output


def test_a_plugin_cannot_take_a_builtin_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, monkeypatch, "db", commands=True)
    monkeypatch.setenv("VOICEIVR_PLUGINS_ENABLED", "db")
    out = CliRunner().invoke(cli, ["db", "--help"])
    assert "Create, migrate and inspect the database" in out.output


def test_setup_cfg_declares_the_demo_as_installed() -> None:
    """The demo is found the way any plugin is: through the entry points setup.cfg declares (conftest makes them
    this tree's; after `pip install -e .` they are the installed ones)."""
    declared = entrypoints.declared()
    assert declared == {pl.ACTIONS: {"demo": "voiceivr.demo.actions:provide"},
                        pl.IDENTITY: {"demo": "voiceivr.demo.identity:provider"},
                        pl.SCHEMA: {"demo": "voiceivr.demo.models:SCHEMA"},
                        pl.COMMANDS: {"demo": "voiceivr.sim.abuse.commands:demo"}}
    assert {d.group: d.value for d in pl.declared() if d.name == "demo"} == {
        g: v["demo"] for g, v in declared.items()}
    for group in declared:
        assert pl.load(group, "demo") is not None


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_plugins_are_found_by_a_fresh_process() -> None:
    """What serve's workers see: a new interpreter with this tree on PYTHONPATH (and, in a stale editable
    install, the stand-in conftest made)."""
    out = subprocess.run([sys.executable, "-m", "voiceivr", "plugins", "--json"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    demo = next(p for p in json.loads(out.stdout)["plugins"] if p["name"] == "demo")
    assert demo["enabled"] and demo["schema"]["branch"] == "demo" and not demo["errors"]


# the harnesses: the demo plugin, the simulations, the test doubles and the one-machine cluster (voiceivr.cluster,
# which runs the demo bank on several nodes)
CORE_MAY_NOT_IMPORT = ("voiceivr.demo", "voiceivr.sim", "voiceivr.testing", "voiceivr.cluster")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_the_core_never_imports_the_demo_the_harnesses_or_the_stand_ins() -> None:
    """Configuration names them (plugins.enabled), as it names speech engines; the core imports none of them,
    not even lazily inside a function."""
    offenders = []
    for path in sorted((ROOT / "voiceivr").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts)
        if module.startswith(CORE_MAY_NOT_IMPORT):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}: {n}" for n in names if n.startswith(CORE_MAY_NOT_IMPORT)]
    assert offenders == []


def test_only_an_action_that_dedupes_is_called_again_after_a_crash(migrated_engine: object) -> None:
    """A plugin's action is never called twice for one key unless it says it dedupes on the key; it learns the
    key and the sequence number of its committed write-ahead row either way."""
    import datetime as dt

    import sqlalchemy as sa

    from voiceivr.actions.effects import RunContext, RunnerRegistry
    from voiceivr.actions.registry import Action, ActionContext, ActionRegistry, Param
    from voiceivr.actions.runner import ActionRunner
    from voiceivr.audit.chain import AuditTrail

    engine: sa.Engine = migrated_engine  # type: ignore[assignment]
    seen: list[ActionContext] = []

    def call(params: object, ctx: ActionContext) -> dict[str, str]:
        seen.append(ctx)
        raise TimeoutError("the backend did not answer")  # the outcome is unknown: did it happen?

    actions = ActionRegistry()
    for name, dedupes in (("notify_once", False), ("notify_keyed", True)):
        actions.register(Action(name, "low", (Param("to", "digits"),), call, dedupes=dedupes))
    registry = RunnerRegistry.from_actions(actions, engine)
    assert registry.get("notify_once").effect == "external_once" and registry.get("notify_keyed").effect == "external"
    runner = ActionRunner(engine, registry, node="n1")
    for name in ("notify_once", "notify_keyed"):
        out = runner.run(key=f"call-1:{name}", action=name, params={"to": "123"}, risk="low",
                         context=RunContext(f"call-1:{name}", "call-1", "p-1"))
        assert out.status == "unknown"
    intents = {r.payload_obj()["idempotency_key"]: r.seq for r in AuditTrail(engine).rows()
               if r.kind == "action.intent"}
    assert [(c.idempotency_key, c.intent_seq) for c in seen] == [(k, intents[k]) for k in intents]
    seen.clear()
    later = ActionRunner(engine, registry, node="n1", clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    report = later.recover()
    assert [c.idempotency_key for c in seen] == ["call-1:notify_keyed"]  # the other one is never called again
    assert report.resumed == 1 and later.status("call-1:notify_once") == "unknown"


# The one file outside the demo that says "bank": the injection filter's rules, whose patterns match what an
# impostor says ("I'm the bank manager", "a message from the bank", "don't tell the bank") on any contact centre's
# line. That is attack vocabulary, not a concept of the product; dropping it would weaken the filter measured in
# docs/injection.md.
NAMES_BANK_AS_ATTACK_VOCABULARY = {"voiceivr/injection_rules.py"}


def test_the_core_names_no_bank() -> None:
    """The product core (call, dialplan, policy, actions, audit, telephony, ...) is not a bank: only the demo
    plugin is (and the harnesses of voiceivr/sim/ that call it, which are not the core either)."""
    hits = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "voiceivr").rglob("*")
                  if p.is_file() and p.suffix in (".py", ".json", ".yaml", ".txt", ".in", ".cfg")
                  and "bank" in p.read_text(errors="replace").lower())
    not_core = tuple(m.replace(".", "/") + "/" for m in CORE_MAY_NOT_IMPORT)
    assert [h for h in hits if not h.startswith(not_core)] == sorted(NAMES_BANK_AS_ATTACK_VOCABULARY)
