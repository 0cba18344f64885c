"""The keys of the audit chain: the HMAC keys rows are chained with, and the checkpoint signing keys made from them.

A key is a secret of at least 32 characters that the database never holds: it comes from ``audit.key`` or from
the key file (``audit.key_file``; default ``<var_dir>/audit-key``, generated on first use). A key file holds one
key per line, oldest first; the **last** key MACs new rows, the earlier ones stay only so older rows still
verify (rotation: append a new line on every node, restart). ``audit.key`` takes the same list, comma-separated.

Each key has an id, a fingerprint of the key (``k`` and 12 hex digits), stored with every row so a verifier
knows which key to use; the id reveals nothing about the key.

Checkpoints are signed with Ed25519 so that someone holding only the public key (an outside auditor, a log
server) can check them without being able to make one. The signing key is derived from the chain key (HMAC of a
fixed label), so there is one secret to distribute and rotate, and every node that may append may also sign.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from voiceivr.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "audit-key"
MIN_LEN = 32
KEY_ID_LEN = 13  # "k" + 12 hex digits; the column holds 16
_ID_LABEL = b"voiceivr audit key id v1\x00"
_SIGNING_LABEL = b"voiceivr audit checkpoint signing key v1"
GENERATE_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def key_id_of(secret: bytes) -> str:
    return "k" + hashlib.sha256(_ID_LABEL + secret).hexdigest()[:12]


@dataclass(frozen=True)
class AuditKey:
    key_id: str
    secret: bytes = field(repr=False)

    def mac(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    @cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        seed = hmac.new(self.secret, _SIGNING_LABEL, hashlib.sha256).digest()
        return Ed25519PrivateKey.from_private_bytes(seed)

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def public_hex(self) -> str:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass(frozen=True)
class Keyring:
    """The keys a process knows, oldest first; the last one is current (MACs new rows, signs checkpoints)."""

    keys: tuple[AuditKey, ...]
    source: str = ""  # where they came from, for error messages (never the keys themselves)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("the audit keyring is empty", hint=GENERATE_HINT)

    @classmethod
    def from_secrets(cls, texts: Iterable[str], source: str = "") -> Keyring:
        keys: list[AuditKey] = []
        for n, text in enumerate(texts, 1):
            if len(text) < MIN_LEN:
                where = f"{source}: " if source else ""
                raise ConfigError(
                    f"{where}audit key {n} is {len(text)} characters; each must be at least {MIN_LEN}",
                    hint=GENERATE_HINT,
                )
            secret = text.encode("utf-8")
            key = AuditKey(key_id_of(secret), secret)
            if any(k.key_id == key.key_id for k in keys):
                continue  # the same key listed twice is harmless
            keys.append(key)
        return cls(tuple(keys), source)

    @property
    def current(self) -> AuditKey:
        return self.keys[-1]

    def get(self, key_id: str) -> AuditKey | None:
        for k in self.keys:
            if k.key_id == key_id:
                return k
        return None

    def __contains__(self, key_id: object) -> bool:
        return isinstance(key_id, str) and self.get(key_id) is not None


def parse_key_lines(text: str) -> list[str]:
    """Keys one per line; blank lines and ``#`` comments are skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_key_file(path: Path) -> Keyring:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"no audit key: {path} does not exist",
            hint="set audit.key or audit.key_file to the key every writer uses (docs/deploy.md, the audit key)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the audit key: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the audit key file is readable by other users; it should be mode 0600",
                    extra={"path": str(path)})
    lines = parse_key_lines(text)
    if not lines:
        raise ConfigError(f"{path}: holds no audit key", hint=GENERATE_HINT)
    return Keyring.from_secrets(lines, str(path))


def generate_key_file(path: Path) -> Keyring:
    """Create ``path`` with one new key unless it exists; every process that races here gets the same key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(48)
    # Written whole to a private file, then linked into place: link() fails if another process won the race,
    # and then everyone uses the winner's key, never a half-written one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("# voiceivr audit chain keys, oldest first; the last one MACs new rows (docs/deploy.md)\n")
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return read_key_file(path)
    finally:
        tmp.unlink()
    log.warning(
        "generated the audit chain key; give every node that shares the database the same key "
        "(audit.key or audit.key_file)",
        extra={"path": str(path)},
    )
    return read_key_file(path)
