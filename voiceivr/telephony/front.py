"""A front dispatcher for several voiceivr nodes: the Kamailio configuration from ``front.cfg.in``.

Each node is a whole ``voiceivr serve`` (its own Kamailio and workers) on its own address; the front spreads new
calls over them, pings each with OPTIONS, fails over, and ends the calls of a node that goes down (docs/deploy.md,
"More than one node"). ``voiceivr.cluster`` runs one in front of nodes in network namespaces; an operator can run
the same file in front of real boxes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from voiceivr.errors import ConfigError
from voiceivr.telephony import kamailio


@dataclass(frozen=True)
class FrontOptions:
    ping_interval_s: int = 1  # the dispatcher's OPTIONS ping to every node (whole seconds, Kamailio's unit)
    fr_timer_ms: int = 700  # a node silent this long is dead (bounds pings and call setup before 100 Trying)
    node_lost_bye_s: int = 0  # calls of a node that went down end this long after it is seen down (0: next tick)
    retry_after_s: int = 5
    dialog_timeout_s: int = 43200
    log_level: int = 1


def _address(host: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"{what} {host!r}: not an IP address (the front dispatcher does no DNS)") from None


def _port(port: int, what: str) -> int:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what} port {port}: must be 1-65535")
    return port


def dispatcher_list(nodes: list[tuple[str, int]]) -> str:
    """The dispatcher list: set 1, one line per node (``sip:host:port``), named node0, node1..."""
    if not nodes:
        raise ConfigError("the front dispatcher needs at least one node")
    seen = set()
    lines = ["# setid destination flags priority attributes (written by voiceivr.telephony.front)\n"]
    for i, (host, port) in enumerate(nodes):
        uri = f"sip:{_address(host, 'node')}:{_port(port, 'node')}"
        if uri in seen:
            raise ConfigError(f"node {uri} is listed twice")
        seen.add(uri)
        lines.append(f"1 {uri} 0 0 name=node{i}\n")
    return "".join(lines)


def write_front_config(directory: Path, host: str, port: int, nodes: list[tuple[str, int]],
                       options: FrontOptions | None = None) -> kamailio.KamailioFiles:
    """Write ``kamailio.cfg`` and ``dispatcher.list`` for a front on ``host:port`` before ``nodes``."""
    opts = options or FrontOptions()
    if not 1 <= opts.ping_interval_s <= 60:
        raise ConfigError(f"front ping interval {opts.ping_interval_s} s: must be 1-60")
    if not 100 <= opts.fr_timer_ms <= 30000:
        raise ConfigError(f"front fr_timer {opts.fr_timer_ms} ms: must be 100-30000")
    if not 0 <= opts.node_lost_bye_s <= 60:
        raise ConfigError(f"front node-lost BYE delay {opts.node_lost_bye_s} s: must be 0-60")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    runtime = directory / "run"
    runtime.mkdir(exist_ok=True)
    ds_list = directory / "dispatcher.list"
    ds_list.write_text(dispatcher_list(nodes), encoding="utf-8")
    rpc_socket = kamailio.rpc_socket_path(runtime)
    values = {
        "LOG_LEVEL": str(opts.log_level),
        "HOST": _address(host, "front address"),
        "PORT": str(_port(port, "front")),
        "MPATH": kamailio.module_dir(),
        "DISPATCHER_LIST": str(ds_list),
        "PING_INTERVAL": str(opts.ping_interval_s),
        "FR_TIMER_MS": str(opts.fr_timer_ms),
        "NODE_LOST_BYE_S": str(opts.node_lost_bye_s),
        "RETRY_AFTER": str(opts.retry_after_s),
        "DIALOG_TIMEOUT": str(opts.dialog_timeout_s),
        "RPC_SOCKET": str(rpc_socket),
        # A refusing node is pinged every ping_interval_s; two missed pings' worth of memory.
        "REFUSING_EXPIRE_S": str(2 * opts.ping_interval_s + 1),
    }
    text = resources.files("voiceivr.telephony").joinpath("front.cfg.in").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    config = directory / "kamailio.cfg"
    config.write_text(text, encoding="utf-8")
    return kamailio.KamailioFiles(config=config, dispatcher_list=ds_list, pid_file=directory / "kamailio.pid",
                                  runtime_dir=runtime, rpc_socket=rpc_socket)


def node_states(files: kamailio.KamailioFiles, timeout: float = 1.0) -> dict[str, str]:
    """Each node's dispatcher state as Kamailio sees it (``dispatcher.list``): ``AP`` active, ``IP``/``IX``
    inactive (probing), ``DX`` disabled..., keyed by ``sip:host:port``."""
    result = kamailio.rpc(files.rpc_socket, "dispatcher.list", [], timeout) or {}
    states: dict[str, str] = {}
    for record in result.get("RECORDS", []):
        for target in (record.get("SET") or {}).get("TARGETS", []):
            dest = target.get("DEST") or {}
            states[str(dest.get("URI"))] = str(dest.get("FLAGS"))
    return states


__all__ = ["FrontOptions", "dispatcher_list", "node_states", "write_front_config"]
