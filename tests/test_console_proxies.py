"""Sign-in throttling per address behind a reverse proxy: X-Forwarded-For is believed from console.trusted_proxies
only (unit), and over real HTTP the wrong passwords are counted against the client the proxy names."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy.engine import Engine

from tests.support.console import PASSWORDS, login_token, running_console, seed
from voiceivr.audit.chain import AuditTrail
from voiceivr.console.proxies import client_address, parse_proxies
from voiceivr.errors import VoiceivrError

PROXIES = parse_proxies(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not from a proxy: the header is anyone's
    ("127.0.0.1", [], "127.0.0.1"),  # a proxy that names nobody
    ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
    ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # the nearest untrusted hop
    ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # several headers read as one list
    ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # all trusted: the furthest one
    ("127.0.0.1", ["nonsense, 198.51.100.1"], "198.51.100.1"),
    ("127.0.0.1", ["198.51.100.1, nonsense"], "127.0.0.1"),  # a malformed hop: the last one vouched for
    ("127.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
    ("::1", ["[2001:db8::7]:443"], "2001:db8::7"),
    (None, ["198.51.100.1"], "unknown"),
])
def test_x_forwarded_for_is_believed_from_trusted_proxies_only(peer: str | None, headers: list[str],
                                                                expected: str) -> None:
    assert client_address(peer, headers, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored_and_bad_entries_are_refused() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"
    assert parse_proxies(["", " 10.0.0.0/8 "]) == parse_proxies(["10.0.0.0/8"])
    with pytest.raises(VoiceivrError, match=r"console\.trusted_proxies: not an IP address or network: 'proxy\.lan'"):
        parse_proxies(["proxy.lan"])


def _wrong(url: str, client: str, name: str) -> int:
    s = requests.Session()
    token = login_token(s, url)
    r = s.post(f"{url}/login", data={"csrf": token, "name": name, "password": "wrong-password-123"},
               headers={"X-Forwarded-For": client}, allow_redirects=False)
    return r.status_code


@pytest.mark.slow  # a real console over HTTP
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_behind_a_trusted_proxy_wrong_passwords_count_against_the_client(migrated_engine: Engine) -> None:
    seed(migrated_engine)
    with running_console(migrated_engine, free_failures=2, trusted_proxies=["127.0.0.1"]) as console:
        # Two wrong passwords each for different accounts from one client: its address must wait after two.
        assert [_wrong(console.url, "198.51.100.7", n) for n in ("pat", "eddie")] == [401, 401]
        assert _wrong(console.url, "198.51.100.7", "vera") == 429
        # Another client behind the same proxy is not held up by the first one's failures.
        assert _wrong(console.url, "198.51.100.8", "nobody") == 401
    addresses = [json.loads(r.payload).get("address") for r in AuditTrail(migrated_engine).rows()
                 if r.kind.startswith("console.login")]
    assert addresses == ["198.51.100.7", "198.51.100.7", "198.51.100.7", "198.51.100.8"]
    assert PASSWORDS["pat"] not in " ".join(r.payload for r in AuditTrail(migrated_engine).rows())
