"""Kamailio as the dispatcher in front of the workers: find it, write its configuration, check it.

The configuration comes from ``kamailio.cfg.in`` beside this module (``@NAME@`` placeholders; Kamailio's own
syntax uses ``$``) and is written under ``<var_dir>/kamailio/`` with the dispatcher list (one line per
worker). Kamailio runs in the foreground under ``voiceivr serve`` (``-DD -E``), never as a system service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from voiceivr.errors import ConfigError
from voiceivr.settings import SipSettings
from voiceivr.telephony.edge import SOURCE_HEADER

LOOPBACK = "127.0.0.1"
# pjsip in the wheel reads at most 4000 bytes per message (PJSIP_MAX_PKT_LEN); Kamailio adds Via,
# Record-Route and X-Voiceivr-Source (~450 bytes with long addresses) before relaying.
MAX_FORWARDED_MESSAGE = 3500
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


def write_config(
    directory: Path, sip: SipSettings, host: str, port: int, workers: list[Worker], log_level: int = 1
) -> KamailioFiles:
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
    }
    text = template
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    config = directory / "kamailio.cfg"
    config.write_text(text, encoding="utf-8")
    return KamailioFiles(config=config, dispatcher_list=ds_list, pid_file=directory / "kamailio.pid",
                         runtime_dir=runtime)


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
