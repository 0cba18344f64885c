"""A voiceivr cluster on one machine: N nodes in network namespaces, a front Kamailio, one PostgreSQL database.

Each node is a whole ``voiceivr serve`` (its own Kamailio in front of its workers) run with ``ip netns exec`` in
its namespace, on its own address of the cluster's subnet; they share one PostgreSQL database (a scratch database
made here and dropped at the end, unless one is given) and one audit key. The front dispatcher
(voiceivr/telephony/front.py) listens on the bridge address of this host: callers on this host dial
``sip:ivr@<front>:<port>``. The nodes reach the database over its Unix socket (file system paths cross network
namespaces; 127.0.0.1 inside a namespace is the namespace's own).

Everything started here is stopped by :meth:`Cluster.stop` (also on an exception in ``with``): front, nodes (and
whatever else runs in their namespaces), namespaces, veth pairs, bridge, scratch database. Each wait is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from voiceivr.cluster.netns import Network, NodeNet
from voiceivr.errors import VoiceivrError
from voiceivr.settings import SipSettings
from voiceivr.telephony import front, kamailio

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
SIP_PORT = 5060


class ClusterError(VoiceivrError):
    """The cluster could not start, or a node did not come up."""


def options_status(host: str, port: int, bind: str, timeout: float = 1.0) -> int | None:
    """Send one SIP OPTIONS to host:port from ``bind``; the final status code, or None without one in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        msg = (f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {bind}:{local};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
               "Max-Forwards: 70\r\n"
               f"From: <sip:probe@{bind}>;tag={uuid.uuid4().hex[:8]}\r\nTo: <sip:ping@{host}:{port}>\r\n"
               f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        sock.sendto(msg, (host, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None  # ICMP port unreachable: nothing listens there yet
            head = data.split(b"\r\n", 1)[0].split()
            if call_id.encode() in data and len(head) >= 2 and head[1].isdigit() and int(head[1]) >= 200:
                return int(head[1])
    return None


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    """Poll ``check`` until true (returns the seconds it took) or raise ClusterError after ``timeout`` s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    raise ClusterError(f"{what}: not within {timeout:.0f} s")


@dataclass
class NodeProc:
    net: NodeNet
    var_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def uri(self) -> str:
        return f"sip:{self.net.address}:{SIP_PORT}"


@dataclass
class ClusterConfig:
    nodes: int = 2
    workers: int = 1  # per node
    subnet: str = "10.77.0.0/24"
    front_port: int = SIP_PORT
    directory: Path = field(default_factory=lambda: Path("var/cluster"))
    database_url: str = ""  # empty: a scratch database on admin_url's server, dropped at the end
    admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    db_socket_dir: str = "/var/run/postgresql"  # how nodes in their namespaces reach that server
    env: dict[str, str] = field(default_factory=dict)  # VOICEIVR_* for every node (handler, plugins...)
    drain_timeout_s: float = 30.0
    start_timeout_s: float = 60.0
    front: front.FrontOptions = field(default_factory=front.FrontOptions)
    tag: str = ""
    # `voiceivr ...` commands run on the host after `db upgrade`, before the nodes start (a node refuses to start
    # without a published live dialplan, for one): e.g. [["demo", "seed"], ["dialplan", "publish", "x.yaml"]].
    setup: list[list[str]] = field(default_factory=list)


def node_database_url(url: str, socket_dir: str) -> str:
    """The same database reached over the server's Unix socket (``?host=<dir>``), for nodes in namespaces."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise ClusterError(f"the cluster shares one PostgreSQL database; {parsed.drivername} cannot be shared")
    if not socket_dir:
        return url
    query = {k: v for k, v in parsed.query.items() if k != "host"}
    query["host"] = socket_dir
    return parsed._replace(host=None, port=None).set(query=query).render_as_string(hide_password=False)


class Cluster:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.tag = config.tag or secrets.token_hex(2)
        self.net = Network.plan(self.tag, config.subnet, config.nodes)
        self.directory = config.directory.resolve()
        self.nodes = [NodeProc(n, self.directory / f"node{n.index}" / "var", self.directory / f"node{n.index}.log")
                      for n in self.net.nodes]
        self.front_proc: subprocess.Popen[bytes] | None = None
        self.front_files: kamailio.KamailioFiles | None = None
        self.database_url = config.database_url
        # Secrets every node must share: the audit key (one chain) and the policy secret (codes bound to actions
        # on one node are checked on another).
        self.audit_key = secrets.token_urlsafe(48)
        self.policy_secret = secrets.token_urlsafe(48)
        self._exit = contextlib.ExitStack()
        self._logs: list[IO[bytes]] = []

    # ------------------------------------------------------------------------------------------ public

    @property
    def front_address(self) -> str:
        return self.net.host_address

    @property
    def front_uri(self) -> str:
        return f"sip:ivr@{self.front_address}:{self.config.front_port}"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.database_url = self._exit.enter_context(self._scratch_database())
        self.run_voiceivr(["db", "upgrade"], timeout=120)
        for command in self.config.setup:
            self.run_voiceivr(command, timeout=120)
        self.net.create()
        for node in self.nodes:
            self.start_node(node.net.index, wait=False)
        for node in self.nodes:
            self.wait_node_up(node.net.index)
        self._start_front()

    def env(self, node: NodeProc | None = None) -> dict[str, str]:
        """The environment of a voiceivr process of this cluster (a node, or a command run on the host)."""
        env = dict(os.environ)
        env.update(self.config.env)
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *inherited])
        env["VOICEIVR_AUDIT_KEY"] = self.audit_key
        env["VOICEIVR_POLICY_SECRET"] = self.policy_secret
        if node is None:
            env["VOICEIVR_DATABASE_URL"] = self.database_url
            env.setdefault("VOICEIVR_PATHS_VAR_DIR", str(self.directory / "host" / "var"))
            return env
        env["VOICEIVR_DATABASE_URL"] = node_database_url(self.database_url, self.config.db_socket_dir)
        env["VOICEIVR_PATHS_VAR_DIR"] = str(node.var_dir)
        env["VOICEIVR_SIP_KAMAILIO"] = "yes"
        env["VOICEIVR_SIP_DRAIN_TIMEOUT_S"] = str(self.config.drain_timeout_s)
        # The nodes share this machine's host name: each names itself (calls.node, action runs, call leases).
        env.setdefault("VOICEIVR_POLICY_RUNNER_NODE", f"node{node.net.index}")
        env.setdefault("VOICEIVR_SIP_HEALTH_INTERVAL_S", "1")
        # A known RTP range, split between the node's workers (else they race for the same ports).
        env.setdefault("VOICEIVR_SIP_RTP_PORT_MIN", "40000")
        env.setdefault("VOICEIVR_SIP_RTP_PORT_MAX", "40999")
        return env

    def run_voiceivr(self, args: list[str], timeout: float = 60.0) -> str:
        """Run ``voiceivr ARGS`` on the host against the cluster's database; its stdout."""
        result = subprocess.run([sys.executable, "-m", "voiceivr", *args], env=self.env(), capture_output=True,
                                text=True, timeout=timeout, cwd=self.directory)
        if result.returncode != 0:
            raise ClusterError(f"voiceivr {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stderr.strip()[-2000:]}")
        return result.stdout

    def start_node(self, index: int, wait: bool = True) -> None:
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            raise ClusterError(f"node{index} is already running (pid {node.proc.pid})")
        node.var_dir.mkdir(parents=True, exist_ok=True)
        logf = node.log_path.open("ab")
        self._logs.append(logf)
        cmd = [*self.net.exec_prefix(node.net), sys.executable, "-m", "voiceivr", "serve", "--host",
               node.net.address, "--port", str(SIP_PORT), "--workers", str(self.config.workers)]
        # A session of its own: the node's supervisor, Kamailio and workers are one process group.
        node.proc = subprocess.Popen(cmd, env=self.env(node), cwd=node.var_dir.parent, stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        node.starts += 1
        log.info("node starting", extra={"node": index, "address": node.net.address, "pid": node.proc.pid})
        if wait:
            self.wait_node_up(index)

    def wait_node_up(self, index: int) -> float:
        node = self.nodes[index]

        def up() -> bool:
            if node.proc is None or node.proc.poll() is not None:
                tail = node.log_path.read_text(errors="replace")[-2000:]
                raise ClusterError(f"node{index} exited while starting:\n{tail}")
            return options_status(node.net.address, SIP_PORT, self.front_address, 0.5) == 200

        return wait_for(f"node{index} answering OPTIONS", up, self.config.start_timeout_s)

    def run_in_node(self, index: int, argv: list[str]) -> subprocess.Popen[str]:
        """Start ``python ARGV`` inside node ``index``'s namespace with its environment (database over the Unix
        socket, the shared audit key, its var directory); the caller waits for it."""
        node = self.nodes[index]
        node.var_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([*self.net.exec_prefix(node.net), sys.executable, *argv], env=self.env(node),
                                cwd=node.var_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def checkpoint_files(self) -> list[Path]:
        """Every node's audit checkpoint file that exists (``audit verify --checkpoint`` each)."""
        return [p for n in self.nodes if (p := n.var_dir / "audit-checkpoints.jsonl").exists()]

    def verify_audit(self) -> str:
        """``voiceivr audit verify`` on the host against every node's checkpoints; ClusterError if it fails."""
        args = ["audit", "verify"]
        for path in self.checkpoint_files():
            args += ["--checkpoint", str(path)]
        return self.run_voiceivr(args, timeout=120)

    def node_alive(self, index: int) -> bool:
        proc = self.nodes[index].proc
        return proc is not None and proc.poll() is None

    def kill_node(self, index: int) -> list[int]:
        """``kill -9`` of every process in the node's namespace (supervisor, Kamailio, workers): a lost box."""
        node = self.nodes[index]
        pids = self.net.pids(node.net)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(5)
        log.warning("node killed", extra={"node": index, "pids": pids})
        return pids

    def drain_node(self, index: int) -> None:
        """SIGTERM to the node's ``voiceivr serve``: it drains (no new calls, current ones finish) and exits."""
        proc = self.nodes[index].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait_node_exit(self, index: int, timeout: float) -> int | None:
        proc = self.nodes[index].proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"node{index} did not exit within {timeout:.0f} s") from None

    def node_states(self) -> dict[str, str]:
        """The front dispatcher's view of every node (``AP`` = active)."""
        if self.front_files is None:
            return {}
        return front.node_states(self.front_files)

    def wait_front_sees(self, index: int, active: bool, timeout: float = 10.0) -> float:
        uri = self.nodes[index].uri

        def seen() -> bool:
            try:
                flags = self.node_states().get(uri, "")
            except (OSError, ValueError, VoiceivrError):
                return False
            return flags.startswith("A") == active

        return wait_for(f"front seeing node{index} {'up' if active else 'down'}", seen, timeout, 0.1)

    def stop(self) -> None:
        """Tear everything down: front, nodes (and all else in their namespaces), network, scratch database."""
        if self.front_proc is not None and self.front_proc.poll() is None:
            self.front_proc.terminate()
            try:
                self.front_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.front_proc.kill()
                self.front_proc.wait(5)
        for node in self.nodes:
            proc = node.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # stop now: hang up, no drain
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
            if node.net.namespace in {name for kind, name in self.net.created if kind == "netns"}:
                for pid in self.net.pids(node.net):  # whatever else was left in there
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self.net.destroy()
        for f in self._logs:
            f.close()
        self._logs.clear()
        self._exit.close()

    # ----------------------------------------------------------------------------------------- private

    @contextlib.contextmanager
    def _scratch_database(self) -> Iterator[str]:
        from sqlalchemy import create_engine

        from voiceivr.db.engine import scratch_postgres

        admin = create_engine(self.config.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with scratch_postgres(admin, "voiceivr_cluster_") as url:
                log.info("scratch database", extra={"url": url})
                yield url
        finally:
            admin.dispose()

    def _start_front(self) -> None:
        binary = kamailio.find_kamailio(SipSettings(kamailio="yes"))
        if binary is None:
            raise ClusterError("Kamailio is not installed: the front dispatcher needs it",
                               hint="apt-get install kamailio (scripts/_bootstrap.sh does)")
        nodes = [(n.net.address, SIP_PORT) for n in self.nodes]
        self.front_files = front.write_front_config(self.directory / "front", self.front_address,
                                                    self.config.front_port, nodes, self.config.front)
        kamailio.check_config(binary, self.front_files)
        logf = (self.directory / "front.log").open("ab")
        self._logs.append(logf)
        self.front_proc = subprocess.Popen(kamailio.command(binary, self.front_files), stdout=logf,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)

        def up() -> bool:
            if self.front_proc is None or self.front_proc.poll() is not None:
                raise ClusterError(f"the front Kamailio exited; see {self.directory / 'front.log'}")
            return options_status(self.front_address, self.config.front_port, self.front_address, 0.5) == 200

        wait_for("front Kamailio answering OPTIONS", up, 15)
        for node in self.nodes:
            self.wait_front_sees(node.net.index, True, 15)

