"""`voiceivr serve --console` (or console.enabled) starts the real console beside the IVR and stops it with the
IVR. The SIP supervisor is a stand-in here (the SIP side has its own tests, tests/test_e2e_bank.py); the console
is the real `voiceivr console` child process, asked over HTTP on 127.0.0.1, all bounded in time."""

from __future__ import annotations

import socket
import time
from typing import Any, ClassVar

import pytest
import requests
from click.testing import CliRunner

from voiceivr.cli import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Supervisor:
    """Stands in for the SIP supervisor: while 'serving', it asks the console for its sign-in page."""

    seen: ClassVar[list[int]] = []
    console_port: ClassVar[int] = 0

    def __init__(self, settings: Any, host: str, port: int, workers: int) -> None:
        self.host, self.port, self.kamailio_bin = host, port, None

    def start(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"workers": [{"port": self.port}]}

    def run(self) -> int:
        deadline = time.monotonic() + 30  # the console's start: 2-4 s measured on this machine, under load
        while time.monotonic() < deadline:
            try:
                r = requests.get(f"http://127.0.0.1:{self.console_port}/login", timeout=2)
                self.seen.append(r.status_code)
                return 0
            except requests.ConnectionError:
                time.sleep(0.1)
        return 3


@pytest.mark.slow  # starts the console process: a few seconds
@pytest.mark.parametrize("how", ["flag", "setting"])
def test_serve_with_the_console_starts_it_beside_the_ivr_and_stops_it_after(
        how: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine
    from voiceivr.telephony import supervisor, worker

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    port = _free_port()
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("VOICEIVR_CONSOLE_PORT", str(port))
    if how == "setting":
        monkeypatch.setenv("VOICEIVR_CONSOLE_ENABLED", "true")
    monkeypatch.setattr(supervisor, "Supervisor", _Supervisor)
    monkeypatch.setattr(worker, "check_handler", lambda *_: None)
    _Supervisor.console_port, _Supervisor.seen = port, []
    started = time.monotonic()
    r = CliRunner().invoke(cli, ["serve", "--port", "5099"] + (["--console"] if how == "flag" else []))
    assert r.exit_code == 0, r.output
    assert _Supervisor.seen == [200] and time.monotonic() - started < 40
    with pytest.raises(requests.ConnectionError):  # stopped with serve
        requests.get(f"http://127.0.0.1:{port}/login", timeout=2)


def test_serve_without_the_console_does_not_start_it(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceivr.cli import console
    from voiceivr.telephony import supervisor, worker

    class Quick(_Supervisor):
        def run(self) -> int:
            return 0

    started: list[bool] = []
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("VOICEIVR_CONSOLE_ENABLED", "true")
    monkeypatch.setattr(supervisor, "Supervisor", Quick)
    monkeypatch.setattr(worker, "check_handler", lambda *_: None)
    monkeypatch.setattr(console, "start_beside_serve", lambda: started.append(True))
    r = CliRunner().invoke(cli, ["serve", "--no-console"])
    assert r.exit_code == 0, r.output
    assert started == []


@pytest.mark.slow  # starts the console process: a few seconds
def test_a_console_that_cannot_start_is_reported_and_the_ivr_carries_on(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceivr.cli import console
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine
    from voiceivr.telephony import supervisor, worker

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    children: list[console.ConsoleChild] = []
    real_start = console.start_beside_serve

    def start() -> console.ConsoleChild:
        children.append(real_start())
        return children[-1]

    class Waits(_Supervisor):
        def run(self) -> int:  # "serving" until the console has given up, then a moment for its message
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and children[0].proc.poll() is None:
                time.sleep(0.1)
            time.sleep(0.5)
            return 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("VOICEIVR_CONSOLE_PORT", str(taken.getsockname()[1]))
        monkeypatch.setattr(supervisor, "Supervisor", Waits)
        monkeypatch.setattr(worker, "check_handler", lambda *_: None)
        monkeypatch.setattr(console, "start_beside_serve", start)
        r = CliRunner().invoke(cli, ["serve", "--console"])
    assert r.exit_code == 0, r.output
    assert children[0].proc.returncode not in (None, 0)
    assert "the console stopped (exit code" in r.output and "the IVR carries on answering calls" in r.output
