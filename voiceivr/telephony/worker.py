"""One worker process: a pjsua2 endpoint carrying up to ``sip.calls_per_worker`` calls.

``voiceivr serve`` starts N of these behind Kamailio (or one alone on the public port). A worker:

- loads the call session named by the ``sip.handler`` setting (``package.module:factory``; the factory is
  called once with the :class:`~voiceivr.settings.Settings` and returns a
  :class:`~voiceivr.call.handler.CallHandler`);
- starts the :class:`~voiceivr.telephony.edge.SipEdge` on its port and prints ``READY <port>`` on stdout, the
  one line its supervisor waits for (logs go to stderr);
- dies with its supervisor (``PR_SET_PDEATHSIG``), so a killed ``serve`` never leaves workers holding ports;
- on SIGTERM drains: refuses new calls (503) and lets its calls go on for at most ``sip.drain_timeout_s``,
  then hangs up what is left and destroys pjsua2 cleanly; SIGINT (or a second SIGTERM) does that at once.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import importlib
import logging
import signal
import sys
import threading
import time
from typing import Any

from voiceivr.call.handler import CallHandler
from voiceivr.errors import ConfigError
from voiceivr.settings import Settings
from voiceivr.telephony.edge import EdgeConfig, SipEdge

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def resolve_factory(spec: str, setting_name: str) -> Any:
    """Import ``package.module:factory`` (or ``package.module.factory``) and return the factory itself."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{setting_name} = {spec!r}: expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting_name} = {spec!r}: cannot import {module_name}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"{setting_name} = {spec!r}: {module_name} has no {attr}")
    if not callable(factory):
        raise ConfigError(f"{setting_name} = {spec!r}: {module_name}.{attr} is not callable")
    return factory


def load_factory(spec: str, setting_name: str, settings: Settings) -> Any:
    """Import ``package.module:factory`` (or ``package.module.factory``) and call it with the settings."""
    return resolve_factory(spec, setting_name)(settings)


# Handler factories that moved: a voiceivr.toml written for an earlier release still names the old place.
MOVED_HANDLERS = {"voiceivr.call.live:handler_factory": "voiceivr.live:handler_factory"}


def check_handler(spec: str, settings: Settings) -> None:
    """What `voiceivr serve` checks once before starting workers: the handler factory imports, and its
    ``preflight(settings)`` (if it has one) finds what the handler needs, without building the handler."""
    if not spec:
        raise ConfigError(
            "sip.handler is not set: no call session to run the calls",
            hint="set VOICEIVR_SIP_HANDLER (or [sip] handler in voiceivr.toml) to package.module:factory",
        )
    factory = resolve_factory(MOVED_HANDLERS.get(spec, spec), "sip.handler")
    preflight = getattr(factory, "preflight", None)
    if callable(preflight):
        preflight(settings)


def load_handler(spec: str, settings: Settings) -> CallHandler:
    """Build the call handler named by ``sip.handler``: ``package.module:factory`` (or ``package.module.factory``)."""
    if not spec:
        raise ConfigError(
            "sip.handler is not set: no call session to run the calls",
            hint="set VOICEIVR_SIP_HANDLER (or [sip] handler in voiceivr.toml) to package.module:factory",
        )
    handler = load_factory(MOVED_HANDLERS.get(spec, spec), "sip.handler", settings)
    if not callable(getattr(handler, "start", None)):
        raise ConfigError(f"sip.handler = {spec!r}: it returned {type(handler).__name__}, "
                          "which has no start(info, media, control)")
    return handler


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor that forked it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def freeze_startup_heap() -> int:
    """Take what the worker loaded at start (models, dialplan, database metadata, pjsua2) out of the cyclic
    garbage collector's sight; returns how many objects that is.

    Those objects live as long as the process, yet every full collection walks them all with the GIL held:
    27-44 ms for the ~125,000 objects of an idle demo worker, more on a busy box, and the media clock needs
    the GIL every 20 ms, so each full collection would be a hole in every call's audio. Frozen, a full
    collection only walks what calls allocated since; their garbage is still collected.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run_worker(
    settings: Settings,
    host: str,
    port: int,
    media_host: str | None = None,
    rtp_port_min: int = 0,
    rtp_port_max: int = 0,
    front_proxy: str = "",
    name: str = "worker",
    register: bool = True,
    contact: str = "",
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    # The media clock thread needs the GIL 100 times a second per call; a busy Python thread should
    # hand it over sooner than Python's default 5 ms (scripts/bench_media_gaps.py measures this).
    if settings.sip.gil_switch_interval_ms > 0:
        sys.setswitchinterval(settings.sip.gil_switch_interval_ms / 1000.0)
    handler = load_handler(settings.sip.handler, settings)
    # Behind Kamailio a worker also takes TCP: requests too big for one datagram arrive that way.
    sip = dataclasses.replace(settings.sip, tcp=True) if front_proxy else settings.sip
    config = EdgeConfig(
        sip=sip,
        host=host,
        port=port,
        media_host=media_host if media_host is not None else host,
        recordings_dir=settings.recordings_dir() if settings.recording.enabled else None,
        max_calls=settings.sip.calls_per_worker,
        rtp_port_min=rtp_port_min,
        rtp_port_max=rtp_port_max,
        front_proxy=front_proxy,
        name=name,
        register=register,
        contact=contact,
    )
    edge = SipEdge(config, handler)
    stop = threading.Event()
    drain = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGTERM and settings.sip.drain_timeout_s > 0 and not drain.is_set():
            drain.set()
            edge.drain()
        else:
            stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    edge.start()
    frozen = freeze_startup_heap()
    log.info("worker ready", extra={"worker": name, "host": host, "port": edge.bound_port,
                                    "calls": config.max_calls, "frozen_objects": frozen})
    sys.stdout.write(f"READY {edge.bound_port}\n")
    sys.stdout.flush()
    wait_for_stop(edge, stop, drain, settings.sip.drain_timeout_s, name)
    log.info("worker stopping", extra={"worker": name, "active_calls": edge.active_calls()})
    gc.unfreeze()  # the edge's last collection must reach every cycle that holds a pjsua2 object again
    edge.stop()
    close = getattr(handler, "close", None)
    if callable(close):
        close()
    return 0


def wait_for_stop(edge: SipEdge, stop: threading.Event, drain: threading.Event, drain_timeout_s: float,
                  name: str) -> None:
    """Return when told to stop, or, once draining, when the last call has ended or the drain time is up."""
    deadline = 0.0
    while not stop.wait(0.2):
        if not drain.is_set():
            continue
        now = time.monotonic()
        if not deadline:
            deadline = now + drain_timeout_s
            log.info("worker draining", extra={"worker": name, "active_calls": edge.active_calls(),
                                               "drain_timeout_s": drain_timeout_s})
        if edge.active_calls() == 0:
            log.info("worker drained", extra={"worker": name})
            return
        if now >= deadline:
            log.warning("drain time is up: hanging up", extra={"worker": name, "active_calls": edge.active_calls()})
            return
