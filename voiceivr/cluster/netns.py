"""The cluster's network: one Linux bridge on this host and one network namespace per node, joined by veth pairs.

    host: bridge <br> 10.77.0.1/24 (the front dispatcher, the callers)
      ├── veth <h0> ── <n0> in namespace <ns0>: 10.77.0.11/24, default route via 10.77.0.1
      └── veth <h1> ── <n1> in namespace <ns1>: 10.77.0.12/24 ...

Names carry a short tag of this run (``vivr<tag>``), so two clusters on one machine never touch each other's
interfaces. Every command is ``ip`` from iproute2, bounded in time; :meth:`Network.destroy` undoes what
:meth:`Network.create` did, whatever state it got to, and may run twice.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)
IP_TIMEOUT_S = 10.0
MAX_NODES = 8


class NetworkError(VoiceivrError):
    """The namespaces or the bridge could not be made."""


def ip_command() -> str:
    found = shutil.which("ip") or ("/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK) else None)
    if found is None:
        raise NetworkError("the `ip` command (iproute2) is not installed", hint="apt-get install iproute2")
    return found


def can_make_namespaces() -> str | None:
    """None when this process can make network namespaces here; else why not (for a test's skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    try:
        ip_command()
    except NetworkError as exc:
        return str(exc)
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


@dataclass(frozen=True)
class NodeNet:
    index: int
    namespace: str
    host_if: str
    node_if: str
    address: str


@dataclass
class Network:
    tag: str
    subnet: ipaddress.IPv4Network
    count: int
    nodes: list[NodeNet] = field(default_factory=list)
    created: list[tuple[str, str]] = field(default_factory=list)  # ("bridge"|"netns"|"link", name), in order

    @classmethod
    def plan(cls, tag: str, subnet: str, count: int) -> Network:
        if not tag.isalnum() or len(tag) > 6:
            raise NetworkError(f"cluster tag {tag!r}: use 1-6 letters or digits")
        if not 1 <= count <= MAX_NODES:
            raise NetworkError(f"{count} nodes: use 1-{MAX_NODES}")
        try:
            net = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise NetworkError(f"subnet {subnet!r}: {exc}") from None
        if net.prefixlen > 27 or not net.is_private:
            raise NetworkError(f"subnet {subnet}: use a private range of at least /27 (e.g. 10.77.0.0/24)")
        hosts = list(net.hosts())
        nodes = [NodeNet(i, f"vivr{tag}n{i}", f"vivr{tag}h{i}", f"vivr{tag}v{i}", str(hosts[10 + i]))
                 for i in range(count)]
        return cls(tag=tag, subnet=net, count=count, nodes=nodes)

    @property
    def bridge(self) -> str:
        return f"vivr{self.tag}br"

    @property
    def host_address(self) -> str:
        return str(next(self.subnet.hosts()))

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [ip_command(), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
        if check and result.returncode != 0:
            raise NetworkError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
        return result

    def create(self) -> None:
        prefix = self.subnet.prefixlen
        self._ip("link", "add", self.bridge, "type", "bridge")
        self.created.append(("link", self.bridge))
        self._ip("addr", "add", f"{self.host_address}/{prefix}", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for node in self.nodes:
            self._ip("netns", "add", node.namespace)
            self.created.append(("netns", node.namespace))
            self._ip("link", "add", node.host_if, "type", "veth", "peer", "name", node.node_if)
            self.created.append(("link", node.host_if))
            self._ip("link", "set", node.node_if, "netns", node.namespace)
            self._ip("link", "set", node.host_if, "master", self.bridge)
            self._ip("link", "set", node.host_if, "up")
            ns = ("-n", node.namespace)
            self._ip(*ns, "link", "set", "lo", "up")
            self._ip(*ns, "addr", "add", f"{node.address}/{prefix}", "dev", node.node_if)
            self._ip(*ns, "link", "set", node.node_if, "up")
            # Replies to callers on other host addresses (RTP to whatever their SDP names) go via the host.
            self._ip(*ns, "route", "add", "default", "via", self.host_address)
        log.info("cluster network up", extra={"bridge": self.bridge, "subnet": str(self.subnet),
                                               "nodes": [n.address for n in self.nodes]})

    def pids(self, node: NodeNet) -> list[int]:
        """Every process in the node's namespace (``ip netns pids``)."""
        result = self._ip("netns", "pids", node.namespace, check=False)
        return [int(x) for x in result.stdout.split() if x.isdigit()]

    def exec_prefix(self, node: NodeNet) -> list[str]:
        return [ip_command(), "netns", "exec", node.namespace]

    def destroy(self) -> None:
        """Delete what :meth:`create` made, newest first; an interface already gone is fine."""
        for kind, name in reversed(self.created):
            if kind == "netns":
                result = self._ip("netns", "del", name, check=False)
            else:
                result = self._ip("link", "del", name, check=False)
            if result.returncode != 0 and "Cannot find" not in result.stderr and "No such" not in result.stderr:
                log.warning("cluster teardown step failed", extra={"what": f"{kind} {name}",
                                                                   "error": result.stderr.strip()})
        self.created.clear()
