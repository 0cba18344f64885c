"""``voiceivr serve``: worker processes behind Kamailio, each restarted when it dies.

Layout on one box::

    caller ──UDP 5060──> Kamailio (dispatcher)  ──127.0.0.1:p1──> worker 0 (pjsua2, <= 4 calls)
                              │  OPTIONS pings ──127.0.0.1:p2──> worker 1
                              └─ 503 + Retry-After when every worker is full
    RTP flows straight between the caller and the worker that took the call.

A worker is a separate process, so one crashing loses only its own calls; the supervisor restarts it (with
a growing pause if it keeps dying) and Kamailio puts it back in rotation when it answers a ping again.
Without Kamailio one worker listens on the public port itself.

The supervisor writes ``<var_dir>/serve/state.json`` (pids, ports, restarts) whenever something changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from voiceivr.errors import ConfigError, VoiceivrError
from voiceivr.settings import Settings
from voiceivr.telephony import kamailio
from voiceivr.telephony.admission import check_settings as check_admission

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


class ServeError(VoiceivrError):
    """A worker or Kamailio could not start."""


def free_udp_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ports the kernel just gave out for UDP on ``host`` (released again: a small race, fine at start)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class WorkerSpec:
    name: str
    host: str
    port: int
    media_host: str
    rtp_min: int = 0
    rtp_max: int = 0
    front_proxy: str = ""
    register: bool = True  # REGISTER to the trunk (sip.register_uri); behind Kamailio only worker 0 does
    contact: str = ""


@dataclass
class ChildState:
    spec: WorkerSpec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = 0.5
    ready: threading.Event = field(default_factory=threading.Event)


def rtp_ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """Split [low, high] into ``parts`` disjoint ranges of even length (RTP+RTCP pairs)."""
    if not low or not high:
        return [(0, 0)] * parts
    size = (high - low + 1) // parts
    size -= size % 2
    if size < 8:
        raise ServeError(f"sip.rtp_port_min..rtp_port_max ({low}-{high}) is too small for {parts} workers",
                         hint="give each worker at least 8 ports (4 calls x RTP+RTCP)")
    return [(low + i * size, low + (i + 1) * size - 1) for i in range(parts)]


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, workers: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.kamailio_bin = kamailio.find_kamailio(settings.sip)
        if self.kamailio_bin and settings.sip.tls_port:
            raise ServeError(
                "sip.tls_port is set, but TLS is terminated by a worker and every worker would need that port",
                hint="run one worker with TLS (sip.kamailio = no); Kamailio in front takes UDP/TCP only",
            )
        # Bad admission settings are one line now, not a worker dying at start or a Kamailio file refused later.
        check_admission(settings.sip)
        kamailio.check_auth(settings.sip)
        if settings.sip.auth_user and not self.kamailio_bin:
            raise ConfigError(
                "sip.auth_user is set, but digest authentication of INVITEs is done by Kamailio, which will not run "
                f"(sip.kamailio = {settings.sip.kamailio})",
                hint="install kamailio and set sip.kamailio = auto or yes, or allow the trunk by address "
                     "(sip.allowed_sources) and clear sip.auth_user",
            )
        self.n_workers = workers if self.kamailio_bin else 1
        self.state_dir = settings.paths.var_dir / "serve"
        self.children: list[ChildState] = []
        self.kamailio_proc: subprocess.Popen[bytes] | None = None
        self.kamailio_files: kamailio.KamailioFiles | None = None
        self.kamailio_restarts = 0
        self._stop = threading.Event()
        self._drain = threading.Event()

    # ---------------------------------------------------------------------------------------- layout

    def plan(self) -> list[WorkerSpec]:
        sip = self.settings.sip
        ranges = rtp_ranges(sip.rtp_port_min, sip.rtp_port_max, self.n_workers)
        if not self.kamailio_bin:
            lo, hi = ranges[0]
            return [WorkerSpec("worker0", self.host, self.port, self.host, lo, hi)]
        if sip.worker_port_base:
            ports = [sip.worker_port_base + i for i in range(self.n_workers)]
        else:
            ports = free_udp_ports(self.n_workers)
        # The trunk must send calls to the dispatcher, not to a worker: one worker registers the public
        # address as its Contact.
        user = (sip.register_aor.split(":", 1)[-1].split("@", 1)[0]) if sip.register_aor else "voiceivr"
        contact = f"<sip:{user}@{sip.public_address or self.host}:{self.port}>"
        # Kamailio relays to the workers from its listening address: on one given address (--host 10.77.0.11),
        # that one, and the workers must believe its X-Voiceivr-Source from there (Linux drops packets from
        # outside that claim a local source address, so only this box can send from it).
        proxy = LOOPBACK if self.host in ("", "0.0.0.0") else self.host
        return [
            WorkerSpec(f"worker{i}", LOOPBACK, p, self.host, ranges[i][0], ranges[i][1], front_proxy=proxy,
                       register=i == 0, contact=contact)
            for i, p in enumerate(ports)
        ]

    # ----------------------------------------------------------------------------------- processes

    def _worker_cmd(self, spec: WorkerSpec) -> list[str]:
        cmd = [sys.executable, "-m", "voiceivr", "serve-worker", "--host", spec.host, "--port", str(spec.port),
               "--media-host", spec.media_host, "--name", spec.name]
        if spec.rtp_min:
            cmd += ["--rtp-min", str(spec.rtp_min), "--rtp-max", str(spec.rtp_max)]
        if spec.front_proxy:
            cmd += ["--front-proxy", spec.front_proxy]
        if not spec.register:
            cmd += ["--no-register"]
        if spec.contact and self.settings.sip.register_uri:
            cmd += ["--contact", spec.contact]
        return cmd

    def _spawn(self, child: ChildState) -> None:
        child.ready.clear()
        child.proc = subprocess.Popen(self._worker_cmd(child.spec), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        child.started = time.monotonic()
        log.info("worker started", extra={"worker": child.spec.name, "pid": child.proc.pid, "port": child.spec.port})
        assert child.proc.stdout is not None
        threading.Thread(target=self._read_ready, args=(child, child.proc.stdout), daemon=True,
                         name=f"ready-{child.spec.name}").start()
        self._write_state()

    @staticmethod
    def _read_ready(child: ChildState, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            if line.startswith(b"READY"):
                child.ready.set()
        stream.close()

    def _start_kamailio(self, specs: list[WorkerSpec]) -> None:
        assert self.kamailio_bin is not None
        workers = [kamailio.Worker(s.host, s.port) for s in specs]
        level = 2 if self.settings.log.level.upper() == "DEBUG" else 1
        self.kamailio_files = kamailio.write_config(self.settings.paths.var_dir / "kamailio", self.settings.sip,
                                                    self.host, self.port, workers, log_level=level,
                                                    max_call_s=self.settings.call.max_duration_s)
        kamailio.check_config(self.kamailio_bin, self.kamailio_files)
        self._spawn_kamailio()

    def _spawn_kamailio(self) -> None:
        assert self.kamailio_bin is not None and self.kamailio_files is not None
        self.kamailio_proc = subprocess.Popen(kamailio.command(self.kamailio_bin, self.kamailio_files),
                                              stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.info("kamailio started", extra={"pid": self.kamailio_proc.pid, "port": self.port})
        self._write_state()

    def _start_metrics(self) -> None:
        """One /metrics for all workers: they write their figures to files (prometheus_client's
        multiprocess mode, set up through the environment they inherit) and this process serves the sum."""
        port = self.settings.metrics.port
        if not port:
            return
        directory = (self.settings.paths.var_dir / "metrics").resolve()
        shutil.rmtree(directory, ignore_errors=True)  # figures of an earlier run are not this run's
        directory.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        from voiceivr.telephony.serve_metrics import ServeCollector

        registry = CollectorRegistry()
        registry.register(ServeCollector(MultiProcessCollector(None, path=str(directory)), self._kamailio_counters))
        start_http_server(port, addr=self.settings.metrics.host, registry=registry)
        log.info("metrics endpoint listening", extra={"host": self.settings.metrics.host, "port": port})

    def _kamailio_counters(self) -> dict[str, int] | None:
        """Kamailio's refusal counters, for /metrics (None when no Kamailio runs)."""
        files, proc = self.kamailio_files, self.kamailio_proc
        if files is None or proc is None or proc.poll() is not None:
            return None
        return kamailio.read_counters(files)

    def start(self, ready_timeout: float | None = None) -> None:
        self._start_metrics()
        specs = self.plan()
        if ready_timeout is None:
            # Workers start at once and each loads its models: 24 of them on 2 cores took longer than a flat
            # 20 s, and serve gave up. Allow for the crowd.
            ready_timeout = 20.0 + 3.0 * len(specs)
        self.children = [ChildState(spec) for spec in specs]
        for child in self.children:
            self._spawn(child)
        deadline = time.monotonic() + ready_timeout
        for child in self.children:
            while not child.ready.wait(0.1):
                assert child.proc is not None
                if child.proc.poll() is not None:
                    self.stop()
                    raise ServeError(f"{child.spec.name} exited with code {child.proc.returncode} while starting",
                                     hint="its error is printed above")
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServeError(f"{child.spec.name} did not start within {ready_timeout:.0f} s")
        if self.kamailio_bin:
            try:
                self._start_kamailio(specs)
            except Exception:
                self.stop()
                raise
        self._write_state()

    def run(self) -> int:
        """Watch the children, restarting what dies, until SIGINT (stop now) or SIGTERM (drain, then stop: no
        new calls, the calls up go on for at most ``sip.drain_timeout_s``; a second SIGTERM stops now)."""
        def on_signal(signum: int, _frame: Any) -> None:
            if signum == signal.SIGTERM and self.settings.sip.drain_timeout_s > 0 and not self._drain.is_set():
                self._drain.set()
            else:
                self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        drain_deadline = 0.0
        while not self._stop.wait(0.2):
            if not self._drain.is_set():
                self.check_children()
                continue
            if not drain_deadline:
                # The workers hang up what is left at drain_timeout_s; a little more for them to stop.
                drain_deadline = time.monotonic() + self.settings.sip.drain_timeout_s + 10.0
                self.begin_drain()
            if all(c.proc is None or c.proc.poll() is not None for c in self.children):
                log.info("drained: every worker has stopped")
                break
            if time.monotonic() > drain_deadline:
                log.warning("workers did not stop after draining: stopping them")
                break
        self.stop()
        return 0

    def begin_drain(self) -> None:
        """Stop taking calls: Kamailio answers new INVITEs and OPTIONS with 503 (a front dispatcher moves traffic
        to other nodes), each worker refuses new calls and stops once its last call has ended."""
        log.info("draining", extra={"drain_timeout_s": self.settings.sip.drain_timeout_s})
        if self.kamailio_files is not None and self.kamailio_proc is not None and self.kamailio_proc.poll() is None:
            try:
                kamailio.set_draining(self.kamailio_files)
            except (OSError, ValueError, ConfigError) as exc:
                log.error("cannot tell Kamailio to drain", extra={"error": str(exc)})
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)  # a worker drains on SIGTERM (worker.py)
        self._write_state()

    def check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                lived = now - child.started
                child.backoff = 0.5 if lived > 30 else min(child.backoff * 2, 10.0)
                child.next_start = now + child.backoff
                if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    from prometheus_client.multiprocess import mark_process_dead

                    mark_process_dead(proc.pid)  # its live gauges (active calls) no longer count
                log.warning("worker died: restarting", extra={"worker": child.spec.name, "pid": proc.pid,
                                                               "exit_code": proc.returncode, "after_s": round(lived, 1),
                                                               "restart_in_s": child.backoff})
                child.proc = None
                self._write_state()
            if child.proc is None and now >= child.next_start and not self._stop.is_set():
                child.restarts += 1
                self._spawn(child)
        if self.kamailio_proc is not None and self.kamailio_proc.poll() is not None and not self._stop.is_set():
            log.error("kamailio died: restarting", extra={"exit_code": self.kamailio_proc.returncode})
            self.kamailio_restarts += 1
            time.sleep(0.5)
            self._spawn_kamailio()

    def stop(self, timeout: float = 8.0) -> None:
        self._stop.set()
        procs: list[subprocess.Popen[bytes]] = [c.proc for c in self.children if c.proc is not None]
        if self.kamailio_proc is not None:
            procs.append(self.kamailio_proc)
        for proc in procs:
            if proc.poll() is None:
                # SIGINT: a worker hangs up at once (SIGTERM would make it drain).
                proc.send_signal(signal.SIGINT if proc is not self.kamailio_proc else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time: killing", extra={"pid": proc.pid})
                proc.kill()
                proc.wait(5)
        self._write_state()

    # ---------------------------------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "supervisor_pid": os.getpid(),
            "draining": self._drain.is_set(),
            "kamailio": None if self.kamailio_proc is None else {
                "pid": self.kamailio_proc.pid,
                "running": self.kamailio_proc.poll() is None,
                "restarts": self.kamailio_restarts,
                "config": str(self.kamailio_files.config) if self.kamailio_files else None,
            },
            "workers": [
                {**asdict(c.spec), "pid": c.proc.pid if c.proc else None,
                 "running": bool(c.proc and c.proc.poll() is None), "restarts": c.restarts}
                for c in self.children
            ],
        }

    def _write_state(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "state.json.tmp"
            tmp.write_text(json.dumps(self.state(), indent=1), encoding="utf-8")
            tmp.replace(self.state_dir / "state.json")
        except OSError:
            log.exception("cannot write serve state", extra={"dir": str(self.state_dir)})


def _die_with_parent() -> None:
    from voiceivr.telephony.worker import die_with_parent

    die_with_parent()


def read_state(var_dir: Path) -> dict[str, Any]:
    return json.loads((var_dir / "serve" / "state.json").read_text(encoding="utf-8"))
