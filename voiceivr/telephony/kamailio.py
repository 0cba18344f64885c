"""Kamailio as the dispatcher in front of the workers: find it, write its configuration, check it.

The configuration comes from ``kamailio.cfg.in`` beside this module (``@NAME@`` placeholders; Kamailio's own
syntax uses ``$``) and is written under ``<var_dir>/kamailio/`` with the dispatcher list (one line per
worker). Kamailio runs in the foreground under ``voiceivr serve`` (``-DD -E``), never as a system service.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from voiceivr.errors import ConfigError
from voiceivr.settings import SipSettings
from voiceivr.telephony.admission import check_settings
from voiceivr.telephony.edgeconfig import SOURCE_HEADER
from voiceivr.telephony.sipmsg import parse_networks

LOOPBACK = "127.0.0.1"
# pjsip in the wheel reads at most 4000 bytes per message (PJSIP_MAX_PKT_LEN); Kamailio adds Via,
# Record-Route and X-Voiceivr-Source (~450 bytes with long addresses) before relaying.
MAX_FORWARDED_MESSAGE = 3500
# What may appear inside a quoted string of the generated file (user names, realms): nothing that could end it.
_TOKEN = re.compile(r"[A-Za-z0-9._~+-]{1,64}")
# AF_UNIX paths are at most 107 bytes; a deep var_dir gets its RPC socket in a short private directory instead.
_MAX_SOCKET_PATH = 100
# Script counters (kamailio.cfg.in) = the reason labels of voiceivr_sip_refused_total.
REFUSAL_COUNTERS = ("forbidden_source", "auth_failed", "source_rate", "source_calls", "no_capacity", "flood")
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
               "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules", "/usr/local/lib/kamailio/modules")


def find_kamailio(sip: SipSettings) -> str | None:
    """The Kamailio executable to use, or None when it should not (or cannot) run."""
    mode = sip.kamailio.strip().lower()
    if mode not in ("auto", "yes", "no"):
        raise ConfigError(f"sip.kamailio = {sip.kamailio!r}: must be auto, yes or no")
    if mode == "no":
        return None
    found = shutil.which(sip.kamailio_binary) or (
        sip.kamailio_binary if os.access(sip.kamailio_binary, os.X_OK) else None
    )
    if found is None and mode == "yes":
        raise ConfigError(
            f"sip.kamailio = yes but {sip.kamailio_binary!r} is not installed",
            hint="apt-get install kamailio (scripts/serve does), or set sip.kamailio = auto",
        )
    return found


def module_dir() -> str:
    for candidate in MODULE_DIRS:
        if Path(candidate, "dispatcher.so").exists():
            return candidate
    raise ConfigError("Kamailio is installed but its dispatcher module (dispatcher.so) was not found",
                      hint=f"looked in {', '.join(MODULE_DIRS)}")


@dataclass(frozen=True)
class Worker:
    host: str
    port: int


@dataclass(frozen=True)
class KamailioFiles:
    config: Path
    dispatcher_list: Path
    pid_file: Path
    runtime_dir: Path
    rpc_socket: Path


def check_auth(sip: SipSettings) -> None:
    """sip.auth_user / auth_password / auth_realm: complete, and safe to write into the generated file."""
    if not sip.auth_user:
        return
    for name in ("auth_user", "auth_realm"):
        if not _TOKEN.fullmatch(getattr(sip, name)):
            raise ConfigError(f"sip.{name} = {getattr(sip, name)!r}: use 1-64 letters, digits or . _ ~ + -")
    if not sip.auth_password:
        raise ConfigError("sip.auth_user is set but sip.auth_password is empty",
                          hint="set VOICEIVR_SIP_AUTH_PASSWORD (or [sip] auth_password), or clear sip.auth_user")


def admission_route(sip: SipSettings) -> str:
    """The body of route[ADMIT] for these settings (admission.py describes the rules)."""
    lines: list[str] = []
    trusted = ",".join(str(n) for n in parse_networks(sip.trusted_proxies))
    allowed = ",".join(str(n) for n in parse_networks(sip.allowed_sources))
    if trusted:
        lines += ["# sip.trusted_proxies: the trunk or PBX; always allowed, no digest, no per-source limits",
                  "# (the dialog is still tracked, for the call length backstop).",
                  f'if (is_in_subnet("$si", "{trusted}")) {{', "\tdlg_manage();", "\treturn 1;", "}"]
    if allowed:
        lines += ["# sip.allowed_sources",
                  f'if (!is_in_subnet("$si", "{allowed}")) {{', '\tcnt_inc("forbidden_source");',
                  '\txlog("L_NOTICE", "INVITE from $si refused: not in sip.allowed_sources\\n");',
                  '\tsend_reply("403", "Forbidden");', "\texit;", "}"]
    if sip.auth_user:
        ha1 = hashlib.md5(f"{sip.auth_user}:{sip.auth_realm}:{sip.auth_password}".encode()).hexdigest()
        realm = sip.auth_realm
        lines += ["# sip.auth_user: only its HA1 is written here (flag 1).",
                  f'if (!pv_proxy_authenticate("{realm}", "{ha1}", "1")) {{',
                  "\t# -5: no credentials yet (the first INVITE of every call); anything else did not verify.",
                  '\tif ($rc != -5) {', '\t\tcnt_inc("auth_failed");',
                  '\t\txlog("L_NOTICE", "INVITE from $si: digest credentials refused ($rc)\\n");', "\t}",
                  f'\tproxy_challenge("{realm}", "1");', "\texit;", "}",
                  f'if ($au != "{sip.auth_user}") {{', '\tcnt_inc("auth_failed");',
                  f'\tproxy_challenge("{realm}", "1");', "\texit;", "}",
                  "consume_credentials();"]
    if sip.source_max_invites > 0:
        window = sip.source_invite_window_s
        lines += [f"# sip.source_max_invites: {sip.source_max_invites} per source and {window} s window.",
                  f"$var(window) = $Ts / {window};",
                  '$var(key) = $si + "/" + $var(window);',
                  "$var(invites) = $shtinc(invites=>$var(key));",
                  f"if ($var(invites) > {sip.source_max_invites}) {{", '\tcnt_inc("source_rate");',
                  f"\t$var(retry) = ($var(window) + 1) * {window} - $Ts;",
                  '\txlog("L_NOTICE", "INVITE from $si refused: over sip.source_max_invites\\n");',
                  '\tappend_to_reply("Retry-After: $var(retry)\\r\\n");',
                  '\tsend_reply("503", "Service Unavailable");', "\texit;", "}"]
    if sip.source_max_calls > 0:
        lines += [f"# sip.source_max_calls: {sip.source_max_calls} calls up per source, across all workers. The",
                  "# lock makes count-then-add one step for two INVITEs from one source at the same time.",
                  'lock("$si");',
                  'get_profile_size("source", "$si", "$var(calls)");',
                  f"if ($var(calls) >= {sip.source_max_calls}) {{", '\tunlock("$si");',
                  '\tcnt_inc("source_calls");',
                  '\txlog("L_NOTICE", "INVITE from $si refused: over sip.source_max_calls\\n");',
                  '\tsend_reply("486", "Busy Here");', "\texit;", "}",
                  "dlg_manage();", 'set_dlg_profile("source", "$si");', 'unlock("$si");']
    else:
        lines += ["dlg_manage();"]
    return "\n".join("\t" + line for line in lines)


def rpc_socket_path(runtime: Path) -> Path:
    path = runtime / "rpc.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="vivr-kam-")) / "rpc.sock"  # mode 0700: still only us


def write_config(
    directory: Path, sip: SipSettings, host: str, port: int, workers: list[Worker], log_level: int = 1,
    max_call_s: float = 0.0,
) -> KamailioFiles:
    check_settings(sip)
    check_auth(sip)
    # Kamailio resolves relative paths from its own working directory, not ours: hand it absolute ones.
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    runtime = directory / "run"
    runtime.mkdir(exist_ok=True)
    ds_list = directory / "dispatcher.list"
    ds_list.write_text(
        "# setid destination flags priority attributes (rewritten by voiceivr serve)\n"
        + "".join(f"1 sip:{w.host}:{w.port} 0 0 name=worker{i}\n" for i, w in enumerate(workers)),
        encoding="utf-8",
    )
    advertise = f" advertise {sip.public_address}:{port}" if sip.public_address else ""
    if host in ("", "0.0.0.0"):
        listen = f"listen=udp:0.0.0.0:{port}{advertise}" if advertise else f"port={port}"
    else:
        listen = f"listen=udp:{host}:{port}{advertise}"
    if not listen.startswith("listen="):
        tcp = ""  # no listen line: Kamailio takes every interface, UDP and TCP
    elif sip.tcp:
        tcp = listen.replace("listen=udp:", "listen=tcp:")
    else:
        # Big requests reach the workers over TCP, and Kamailio needs a TCP socket of its own for that.
        tcp = f"listen=tcp:{LOOPBACK}:{port}"
    template = resources.files("voiceivr.telephony").joinpath("kamailio.cfg.in").read_text(encoding="utf-8")
    flood = (
        "if (src_ip != myself && !pike_check_req()) {\n"
        '\t\tcnt_inc("flood");\n'
        '\t\txlog("L_WARN", "flood from $si: dropping\\n");\n\t\texit;\n\t}'
        if sip.flood_limit > 0 else "# sip.flood_limit = 0: no flood limit"
    )
    values = {
        "LOG_LEVEL": str(log_level),
        "CHILDREN": "2",
        "LISTEN": listen,
        "TCP": tcp,
        "MPATH": module_dir(),
        "DISPATCHER_LIST": str(ds_list.resolve()),
        "PING_INTERVAL": str(max(1, sip.health_interval_s)),
        "FLOOD_LIMIT": str(max(1, sip.flood_limit)),
        "FLOOD_CHECK": flood,
        "RETRY_AFTER": str(sip.retry_after_s),
        "SOURCE_HEADER": SOURCE_HEADER,
        "MAX_MESSAGE": str(MAX_FORWARDED_MESSAGE),
        "ADMIT": admission_route(sip),
        "INVITE_EXPIRE": str(2 * sip.source_invite_window_s),
        # Kamailio's own default (12 h) when calls have no length limit.
        "DIALOG_TIMEOUT": str(int(max_call_s) + 60 if max_call_s > 0 else 43200),
        "DIALOG_SEND_BYE": "1" if max_call_s > 0 else "0",
        "RPC_SOCKET": str(rpc_socket_path(runtime)),
        "AUTH_SECRET": secrets.token_hex(16),
    }
    text = template
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    config = directory / "kamailio.cfg"
    # It holds the digest HA1 and the nonce secret: readable by us (and the Kamailio we start) only.
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(text, encoding="utf-8")
    return KamailioFiles(config=config, dispatcher_list=ds_list, pid_file=directory / "kamailio.pid",
                         runtime_dir=runtime, rpc_socket=Path(values["RPC_SOCKET"]))


def command(binary: str, files: KamailioFiles) -> list[str]:
    """Foreground Kamailio (no daemon, logs on stderr) with our own pid file and runtime directory."""
    return [binary, "-DD", "-E", "-f", str(files.config), "-P", str(files.pid_file), "-Y", str(files.runtime_dir),
            "-w", str(files.runtime_dir), "-m", "64", "-M", "8"]


def check_config(binary: str, files: KamailioFiles) -> None:
    """``kamailio -c``: a broken generated file is our bug; say so before anything listens."""
    result = subprocess.run([binary, "-c", "-f", str(files.config), "-Y", str(files.runtime_dir)],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ConfigError(f"Kamailio rejects the generated {files.config}: {tail}")


def rpc(socket_path: Path, method: str, params: list[Any], timeout: float = 1.0) -> Any:
    """One JSON-RPC call over Kamailio's datagram socket; returns its ``result`` (ConfigError on an error)."""
    reply_dir = Path(tempfile.mkdtemp(prefix="vivr-rpc-"))
    reply = reply_dir / "r.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(reply))
            sock.settimeout(timeout)
            request = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
            sock.sendto(json.dumps(request).encode(), str(socket_path))
            answer = json.loads(sock.recv(65536))
    finally:
        shutil.rmtree(reply_dir, ignore_errors=True)
    if answer.get("error"):
        raise ConfigError(f"Kamailio RPC {method} failed: {answer['error']}")
    return answer.get("result")


def set_draining(files: KamailioFiles) -> None:
    """From now on new INVITEs and OPTIONS get 503 (kamailio.cfg.in); calls up go on."""
    rpc(files.rpc_socket, "pv.shvSet", ["draining", "int", 1])


def read_counters(files: KamailioFiles, timeout: float = 1.0) -> dict[str, int]:
    """Kamailio's refusal counters (``cnt.get_vars script`` over its JSON-RPC datagram socket)."""
    result = rpc(files.rpc_socket, "cnt.get_vars", ["script"], timeout) or {}
    if isinstance(result, list):  # some versions wrap the struct in a list
        result = result[0] if result else {}
    return {name: int(result.get(name, 0)) for name in REFUSAL_COUNTERS}
