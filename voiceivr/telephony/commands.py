"""``voiceivr serve``, ``voiceivr call`` and the hidden ``voiceivr serve-worker``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", help="Address to listen on for SIP (default: sip.host).")
@click.option("--port", type=int, help="Public SIP port, UDP (default: sip.port).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes behind Kamailio (default: sip.workers).")
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, workers: int | None) -> None:
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
    sup.start()
    state = sup.state()
    ports = ", ".join(str(w["port"]) for w in state["workers"])
    front = "kamailio" if sup.kamailio_bin else "worker0"
    click.echo(f"voiceivr: serving SIP on udp:{sup.host}:{sup.port} ({front}); {len(state['workers'])} worker(s) "
               f"[{ports}], {settings.sip.calls_per_worker} calls each", err=True)
    sys.exit(sup.run())


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


@click.command("call")
@click.argument("uri")
@click.option("--play", "play", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="WAV file to send (repeatable, in order).")
@click.option("--say", "say", multiple=True, help="Text to speak through the TTS engine (repeatable).")
@click.option("--dtmf", default="", help="Digits to key; ',' pauses 0.5 s, 'w' waits for the next prompt to end.")
@click.option("--dtmf-method", type=click.Choice(["rfc4733", "sip-info"]), default="rfc4733", show_default=True)
@click.option("--wait-prompt", type=float, default=0.0, help="First wait up to this many seconds for the greeting "
              "to finish.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Write what was heard to this WAV.")
@click.option("--transcribe", is_flag=True, help="Transcribe what was heard (needs --stt).")
@click.option("--tts", "tts_spec", envvar="VOICEIVR_CALL_TTS", default="",
              help="TTS engine for --say: package.module:factory (called with the settings).")
@click.option("--stt", "stt_spec", envvar="VOICEIVR_CALL_STT", default="",
              help="STT engine for --transcribe: package.module:factory (called with the settings).")
@click.option("--duration", type=float, default=10.0, show_default=True, help="Hang up this many seconds after "
              "answer (unless the far end hangs up first).")
@click.option("--bind", help="Local address for the caller's SIP and RTP (default: 127.0.0.1 for a loopback "
              "target, else all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def call(app: AppContext, uri: str, play: tuple[Path, ...], say: tuple[str, ...], dtmf: str, dtmf_method: str,
         wait_prompt: float, record: Path | None, transcribe: bool, tts_spec: str, stt_spec: str, duration: float,
         bind: str | None, as_json: bool) -> None:
    """Place a real SIP call to URI (sip:USER@HOST:PORT), play audio, key DTMF, record what answers.

    Steps run in this order: wait for the greeting (--wait-prompt), play each --play/--say, key --dtmf, then
    listen until --duration. Agent speech timings in the report come from the audio heard.
    """
    from voiceivr.telephony import caller

    if not uri.startswith(("sip:", "sips:")):
        raise VoiceivrError(f"{uri!r} is not a SIP URI", hint="e.g. sip:ivr@127.0.0.1:5060")
    settings = app.settings
    rate = settings.sip.media_rate
    plan = caller.CallerPlan(dtmf=dtmf, dtmf_method=dtmf_method, wait_prompt_s=wait_prompt, duration_s=duration)
    for path in play:
        plan.play.append((str(path), caller.read_wav_mono(path, rate)))
    for text in say:
        plan.play.append((f"say: {text}", caller.synthesize(settings, text, rate, tts_spec)))
    stt = caller.transcriber(settings, stt_spec) if transcribe else None
    report = caller.place_call(settings.sip, uri, plan, record=record, bind=bind, stt=stt)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        click.echo(caller.format_report(report))
    if not report.answered:
        sys.exit(1)
