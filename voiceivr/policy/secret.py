"""The server secret that keys every HMAC of the safe path (codes bound to actions, stored code MACs)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from voiceivr.errors import ConfigError
from voiceivr.settings import Settings

log = logging.getLogger(__name__)

SECRET_FILE = "policy-secret"
MIN_LEN = 32


def server_secret(settings: Settings) -> bytes:
    """``policy.secret`` if set; otherwise the one generated into ``<var_dir>/policy-secret`` on first use.

    A generated secret is fine for one node. Nodes that share a database must share the secret (set
    ``policy.secret`` / ``VOICEIVR_POLICY_SECRET`` on each), or one node cannot verify another's codes.
    """
    configured = settings.policy.secret
    if configured:
        if len(configured) < MIN_LEN:
            raise ConfigError(
                f"policy.secret is {len(configured)} characters; it must be at least {MIN_LEN}",
                hint="generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
            )
        return configured.encode("utf-8")
    path = Path(settings.paths.var_dir) / SECRET_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy secret: {exc.strerror}") from None
    if len(text) >= MIN_LEN:
        return text.encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(48)
    # Written whole to a private file, then linked into place: link() fails if another process won the
    # race, and then everyone uses the winner's secret, never a half-written one.
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip().encode("ascii")
    finally:
        tmp.unlink()
    log.warning(
        "generated the policy secret; set policy.secret on every node if several nodes share the database",
        extra={"path": str(path)},
    )
    return text.encode("ascii")
