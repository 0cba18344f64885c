"""``voiceivr replay``: the command, its options and its output; the replay itself is :mod:`voiceivr.replay`."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.audio.wav import write_wav
from voiceivr.call.budget import StageStats
from voiceivr.call.driver import EchoPath
from voiceivr.clitypes import Finite
from voiceivr.errors import VoiceivrError
from voiceivr.replay import load_call, print_report, run_replay, scratch_database
from voiceivr.replay_secrets import supply
from voiceivr.runtime import CallRuntime


@click.command()
@click.argument("call_file", metavar="CALL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dialplan", "dialplan_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Dialplan YAML to run (default: the live published version, else dialplans/<live_name>.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out-agent", type=click.Path(dir_okay=False, path_type=Path),
              help="Write what the agent said, as the caller heard it, to this WAV file.")
@click.option("--realtime", is_flag=True, help="Pace the replay at real time instead of as fast as possible.")
@click.option("--echo", "echo_db", type=Finite(-90, 20, "dB"), default=None, metavar="DB",
              help="Also feed the agent's audio back into the caller channel at this gain (e.g. -12).")
@click.option("--keep-db", type=click.Path(dir_okay=False, path_type=Path),
              help="Run actions in this SQLite file (kept) instead of a throw-away one.")
@click.option("--secret", "secrets", multiple=True, metavar="VALUE", envvar="VOICEIVR_REPLAY_SECRETS",
              help="The keys of a secret input the recording masks (a PIN, a code), once per input in order; "
                   "spoken ones are keyed. Or VOICEIVR_REPLAY_SECRETS=\"1234 000000\", kept out of the process list.")
@pass_app
def replay(app: AppContext, call_file: Path, dialplan_file: Path | None, as_json: bool, out_agent: Path | None,
           realtime: bool, echo_db: float | None, keep_db: Path | None, secrets: tuple[str, ...]) -> None:
    """Run a recorded call (caller WAV or SIP-edge recording) through the whole pipeline."""
    settings = app.settings
    call = load_call(call_file)
    try:
        supply(call.masked, list(secrets), call.agent, call.rate)  # before the engines load: a misfit stops here
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--secret") from None
    if dialplan_file is None:
        dialplan_file = _live_dialplan_file(app) or settings.dialplan.dir / f"{settings.dialplan.live_name}.yaml"
    with tempfile.TemporaryDirectory(prefix="voiceivr-replay-") as tmp:
        # A prompt cache of its own: espeak-ng's output depends on what the process synthesised before, so a
        # replay is repeatable only if it synthesises the same prompts in the same order every time.
        settings = dataclasses.replace(
            settings, speech=dataclasses.replace(settings.speech, prompt_cache_dir=str(Path(tmp) / "prompts")))
        db = scratch_database(keep_db or Path(tmp) / "replay.sqlite3", settings, own_key=keep_db is None)
        runtime = CallRuntime.build(settings, db=db, dialplan_file=dialplan_file, stt_workers=0,
                                    store_calls=keep_db is not None, stats=StageStats())
        try:
            result = run_replay(runtime, call, echo=EchoPath(gain_db=echo_db) if echo_db is not None else None,
                                realtime=realtime, secrets=list(secrets))
        finally:
            runtime.close()
            db.dispose()
    if out_agent is not None:
        write_wav(out_agent, result.drive.agent, call.rate)
    if as_json:
        if result.secret_note:
            click.echo(f"note: {result.secret_note}", err=True)
        click.echo(json.dumps(result.to_json(), indent=1, sort_keys=True, default=str))
    else:
        print_report(result)


def _live_dialplan_file(app: AppContext) -> Path | None:
    """The live published dialplan, written to a temporary file, if the configured database has one."""
    from voiceivr.dialplan.store import get_version

    try:
        row = get_version(app.ready_engine(), app.settings.dialplan.live_name)
    except VoiceivrError:
        return None
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8")  # noqa: SIM115
    with handle:
        handle.write(row.source)
    return Path(handle.name)
