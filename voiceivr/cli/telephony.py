"""``voiceivr serve``, ``voiceivr call`` and the hidden ``voiceivr serve-worker``."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.clitypes import Finite
from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", help="Address to listen on for SIP (default: sip.host).")
@click.option("--port", type=int, help="Public SIP port, UDP (default: sip.port).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes behind Kamailio (default: sip.workers).")
@click.option("--console/--no-console", "with_console", default=None,
              help="Also serve the admins' web console on console.host:console.port (default: console.enabled).")
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, workers: int | None,
          with_console: bool | None) -> None:
    """Answer phone calls: Kamailio on the public SIP port spreads calls over N worker processes.

    Each worker carries up to sip.calls_per_worker calls (at most 4, a limit of the pjsua2 build) and runs the
    call session named by sip.handler. A worker that dies is restarted; calls beyond capacity get 503 with
    Retry-After. Without Kamailio installed, one worker listens on the port itself.
    """
    from voiceivr.telephony.supervisor import Supervisor
    from voiceivr.telephony.worker import check_handler

    settings = app.settings
    # Fail here, once, with a clear message, rather than in every worker.
    check_handler(settings.sip.handler, settings)
    sup = Supervisor(settings, host or settings.sip.host, port if port is not None else settings.sip.port,
                     workers or settings.sip.workers)
    if sup.kamailio_bin is None:
        why = "sip.kamailio = no" if settings.sip.kamailio.lower() == "no" else "Kamailio is not installed"
        click.echo(f"voiceivr: {why}: running ONE worker on the port (at most {settings.sip.calls_per_worker} "
                   "calls; apt-get install kamailio for more workers)", err=True)
    if not (with_console if with_console is not None else settings.console.enabled):
        sys.exit(_run(sup, settings))
    from voiceivr.cli.console import start_beside_serve

    console = start_beside_serve()
    try:
        code = _run(sup, settings)
    finally:
        console.stop()
    sys.exit(code)


def _run(sup: Any, settings: Any) -> int:
    sup.start()
    state = sup.state()
    ports = ", ".join(str(w["port"]) for w in state["workers"])
    front = "kamailio" if sup.kamailio_bin else "worker0"
    click.echo(f"voiceivr: serving SIP on udp:{sup.host}:{sup.port} ({front}); {len(state['workers'])} worker(s) "
               f"[{ports}], {settings.sip.calls_per_worker} calls each", err=True)
    return int(sup.run())


@click.command("serve-worker", hidden=True)
@click.option("--host", required=True)
@click.option("--port", type=int, required=True)
@click.option("--media-host")
@click.option("--rtp-min", type=int, default=0)
@click.option("--rtp-max", type=int, default=0)
@click.option("--front-proxy", default="")
@click.option("--name", default="worker")
@click.option("--no-register", is_flag=True)
@click.option("--contact", default="")
@pass_app
def serve_worker(app: AppContext, host: str, port: int, media_host: str | None, rtp_min: int, rtp_max: int,
                 front_proxy: str, name: str, no_register: bool, contact: str) -> None:
    """One worker process (started by `voiceivr serve`)."""
    from voiceivr.telephony.worker import die_with_parent, run_worker

    die_with_parent()
    sys.exit(run_worker(app.settings, host, port, media_host=media_host, rtp_port_min=rtp_min,
                        rtp_port_max=rtp_max, front_proxy=front_proxy, name=name, register=not no_register,
                        contact=contact))


SECONDS = Finite(0, 3600, "seconds")
STEP_OPTIONS = {"--wait-prompt": "wait", "--say": "say", "--play": "play", "--dtmf": "dtmf", "--pause": "pause",
                "--barge-in": "barge"}


class StepsInOrder(click.Command):
    """Remembers the order the step options were given in: ``--say A --dtmf 1 --say B`` runs in that order."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        order = []
        for arg in args:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if name in STEP_OPTIONS:
                order.append(STEP_OPTIONS[name])
        ctx.meta["step_order"] = order
        return super().parse_args(ctx, args)


@click.command("call", cls=StepsInOrder)
@click.argument("uri")
@click.option("--wait-prompt", "wait", type=SECONDS, multiple=True,
              help="Wait up to this many seconds for the agent to speak and fall silent (repeatable).")
@click.option("--say", "say", multiple=True, help="Text to speak through the TTS engine (repeatable).")
@click.option("--play", "play", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="WAV file to send (repeatable).")
@click.option("--dtmf", multiple=True, help="Digits to key (repeatable); ',' pauses 0.5 s, 'w' waits for the next "
              "prompt to end.")
@click.option("--pause", type=SECONDS, multiple=True, help="Stay quiet this many seconds (repeatable).")
@click.option("--barge-in", "barge", type=SECONDS, multiple=True, help="The next --say/--play talks over the agent "
              "once it has been talking this many seconds (repeatable).")
@click.option("--dtmf-method", type=click.Choice(["rfc4733", "sip-info"]), default="rfc4733", show_default=True)
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write what was heard to this WAV.")
@click.option("--transcribe", is_flag=True, help="Transcribe what was heard (with --stt, else speech.stt_engine).")
@click.option("--tts", "tts_spec", envvar="VOICEIVR_CALL_TTS", default="",
              help="TTS engine for --say: a name (espeak-ng, piper, coqui; default: speech.tts_engine) or "
                   "package.module:factory (called with the settings).")
@click.option("--stt", "stt_spec", envvar="VOICEIVR_CALL_STT", default="",
              help="STT engine for --transcribe: a name (pocketsphinx, vosk; default: speech.stt_engine) or "
                   "package.module:factory (called with the settings).")
@click.option("--duration", type=SECONDS, default=10.0, show_default=True, help="After the steps, listen until this "
              "many seconds after answer (unless the far end hangs up first).")
@click.option("--bind", help="Local address for the caller's SIP and RTP (default: 127.0.0.1 for a loopback "
              "target, else all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def call(app: AppContext, uri: str, wait: tuple[float, ...], say: tuple[str, ...], play: tuple[Path, ...],
         dtmf: tuple[str, ...], pause: tuple[float, ...], barge: tuple[float, ...], dtmf_method: str,
         record: Path | None, transcribe: bool, tts_spec: str, stt_spec: str, duration: float, bind: str | None,
         as_json: bool) -> None:
    """Place a real SIP call to URI (sip:USER@HOST:PORT), talk, key DTMF, record what answers.

    The steps (--wait-prompt, --say, --play, --dtmf, --pause, --barge-in) run in the order given, e.g.

      voiceivr call sip:ivr@127.0.0.1:5060 --wait-prompt 10 --dtmf 10000001#w1234# --wait-prompt 10
      --barge-in 1.0 --say "what is my balance" --wait-prompt 10 --record heard.wav

    then the caller listens until --duration. The report's timings (agent speech, voice-to-voice, how fast
    the agent stopped when talked over) come from the audio heard, on the caller's media clock.
    """
    # The SIP test caller is a harness (voiceivr/sim/): named here, never imported by the core.
    caller: Any = importlib.import_module("voiceivr.sim.callers.sip")

    if not uri.startswith(("sip:", "sips:")):
        raise VoiceivrError(f"{uri!r} is not a SIP URI", hint="e.g. sip:ivr@127.0.0.1:5060")
    settings = app.settings
    rate = settings.sip.media_rate
    values: dict[str, list[Any]] = {"wait": list(wait), "say": list(say), "play": list(play), "dtmf": list(dtmf),
                                    "pause": list(pause), "barge": list(barge)}
    steps: list[Any] = []
    barge_after: float | None = None
    for kind in click.get_current_context().meta.get("step_order", []):
        value = values[kind].pop(0)
        if kind == "wait":
            steps.append(caller.Wait(float(value)))
        elif kind == "pause":
            steps.append(caller.Pause(float(value)))
        elif kind == "dtmf":
            steps.append(caller.Dtmf(str(value)))
        elif kind == "barge":
            barge_after = float(value)
        else:
            pcm = (caller.synthesize(settings, str(value), rate, tts_spec) if kind == "say"
                   else caller.read_wav_mono(Path(value), rate))
            label = f"say: {value}" if kind == "say" else str(value)
            steps.append(caller.Play(label, pcm, barge_after_s=barge_after))
            barge_after = None
    if barge_after is not None:
        raise VoiceivrError("--barge-in must come before the --say or --play it applies to")
    plan = caller.CallerPlan(steps=steps, dtmf_method=dtmf_method, duration_s=duration)
    stt = caller.transcriber(settings, stt_spec) if transcribe else None
    report = caller.place_call(settings.sip, uri, plan, record=record, bind=bind, stt=stt)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        click.echo(caller.format_report(report))
    if report.error:
        sys.exit(1)
    if not report.answered:
        sys.exit(1)
