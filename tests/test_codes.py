"""Codes bound to one exact action; the server secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from voiceivr.errors import ConfigError
from voiceivr.policy.codes import BoundAction, action_digest, code_mac, mask_number, new_code, normalise_code
from voiceivr.policy.secret import SECRET_FILE, server_secret
from voiceivr.settings import Settings

SECRET = b"k" * 32


def _bound(**changes: object) -> BoundAction:
    params = {"amount_cents": 5000, "payee": "savings", "from_account": "111"}
    session = str(changes.pop("session", "s1"))
    params.update(changes)  # type: ignore[arg-type]
    return BoundAction("transfer", params, session, ("amount_cents",), ("payee",))


def test_digest_changes_with_amount_payee_session_action_and_nonce() -> None:
    base = action_digest(SECRET, _bound(), "n1")
    assert base == action_digest(SECRET, _bound(), "n1")
    assert base != action_digest(SECRET, _bound(amount_cents=5001), "n1")
    assert base != action_digest(SECRET, _bound(payee="checking"), "n1")
    assert base != action_digest(SECRET, _bound(session="s2"), "n1")
    assert base != action_digest(SECRET, _bound(), "n2")
    assert base != action_digest(b"x" * 32, _bound(), "n1")
    other = BoundAction("pay_payee", _bound().params, "s1", ("amount_cents",), ("payee",))
    assert base != action_digest(SECRET, other, "n1")


def test_code_mac_depends_on_code_and_action() -> None:
    d = action_digest(SECRET, _bound(), "n1")
    assert code_mac(SECRET, d, "n1", "123456") != code_mac(SECRET, d, "n1", "123457")
    assert code_mac(SECRET, d, "n1", "123456") != code_mac(SECRET, action_digest(SECRET, _bound(amount_cents=1), "n1"),
                                                           "n1", "123456")


def test_code_helpers() -> None:
    code = new_code(6)
    assert len(code) == 6 and code.isdigit()
    assert normalise_code("1 2 3-4 5 6") == "123456"
    assert mask_number("+1 555 000 1111") == "***-***-1111"


def test_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    s = Settings()
    s.paths.var_dir = tmp_path
    first = server_secret(s)
    path = tmp_path / SECRET_FILE
    assert len(first) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server_secret(s) == first
    assert not [p for p in tmp_path.iterdir() if p.name != SECRET_FILE]  # no temp files left behind


def test_configured_secret_wins_and_must_be_long(tmp_path: Path) -> None:
    s = Settings()
    s.paths.var_dir = tmp_path
    s.policy.secret = "z" * 40
    assert server_secret(s) == b"z" * 40
    s.policy.secret = "short"
    with pytest.raises(ConfigError, match="at least 32"):
        server_secret(s)
