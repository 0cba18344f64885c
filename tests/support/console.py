"""A real console for tests: the Starlette app under uvicorn on 127.0.0.1 (a free port), in a thread, over a
migrated database with the demo bank's dialplan published and one admin per role."""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import uvicorn
from sqlalchemy.engine import Engine

from voiceivr.actions.catalog import plugin_registry
from voiceivr.console.accounts import add_user
from voiceivr.console.web import make_app
from voiceivr.dialplan.store import publish
from voiceivr.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
BANK = (ROOT / "dialplans" / "bank.yaml").read_text()
PASSWORDS = {"pat": "publisher-password-1", "eddie": "editor-password-12", "vera": "viewer-password-12"}
ROLES = {"pat": "publisher", "eddie": "editor", "vera": "viewer"}


@dataclass
class RunningConsole:
    url: str
    engine: Engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(engine: Engine) -> None:
    registry = plugin_registry(load_settings()[0])
    publish(engine, BANK, "bank.yaml", registry, "setup", "first version")
    for name, password in PASSWORDS.items():
        add_user(engine, name, ROLES[name], password, by="test")


@contextmanager
def running_console(engine: Engine, *, free_failures: int = 5, recordings: Path | None = None,
                    trusted_proxies: list[str] | None = None) -> Iterator[RunningConsole]:
    settings = load_settings()[0]
    settings = dataclasses.replace(settings, console=dataclasses.replace(
        settings.console, login_free_failures=free_failures, login_max_delay_s=60.0,
        trusted_proxies=trusted_proxies or []))
    if recordings is not None:
        settings = dataclasses.replace(settings, recording=dataclasses.replace(settings.recording,
                                                                               dir=str(recordings)))
    port = _free_port()
    app = make_app(settings, engine, plugin_registry(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="console-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.02)
    try:
        yield RunningConsole(f"http://127.0.0.1:{port}", engine)
    finally:
        server.should_exit = True
        thread.join(10)


def recorded_calls(root: Path, count: int) -> list[str]:
    """``count`` copies of the recorded bank call (tests/fixtures/calls), each under a call id of its own, laid out
    as ``voiceivr serve`` lays out its recordings; their ids, oldest first."""
    import json
    import os
    import shutil
    import uuid

    fixture = ROOT / "tests" / "fixtures" / "calls" / "bank_call.json"
    day = root / "2026-12-05"
    day.mkdir(parents=True, exist_ok=True)
    ids = []
    for n in range(count):
        call_id = str(uuid.UUID(int=0xC0FFEE00 + n, version=4))
        doc = json.loads(fixture.read_text())
        doc.update(call_id=call_id, wav=f"{call_id}.wav")
        (day / f"{call_id}.json").write_text(json.dumps(doc))
        shutil.copyfile(fixture.with_suffix(".wav"), day / f"{call_id}.wav")
        os.utime(day / f"{call_id}.json", (1_800_000_000 + n, 1_800_000_000 + n))
        ids.append(call_id)
    return ids


def login_token(s: requests.Session, url: str) -> str:
    page = s.get(f"{url}/login")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def sign_in(url: str, name: str, password: str | None = None) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    token = login_token(s, url)
    r = s.post(f"{url}/login", data={"csrf": token, "name": name, "password": password or PASSWORDS[name]},
               allow_redirects=False)
    return s, r


def page_csrf(s: requests.Session, url: str) -> str:
    page = s.get(f"{url}/dialplans/bank")
    return re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
