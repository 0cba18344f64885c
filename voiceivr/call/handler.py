"""What the SIP edge hands to the call brain, and what the brain may ask of the SIP edge.

The edge answers a call, builds a :class:`CallInfo` from the INVITE and a :class:`~voiceivr.call.media.MediaChannel`
for its audio, and calls ``CallHandler.start``. The handler runs the call on its own worker thread. It asks
the edge for SIP things (hang up, transfer) only through :class:`CallControl`, whose methods queue a command
for the one thread that owns pjsua2 and return at once. Events that come from SIP (DTMF, a re-INVITE moving
media, the far end hanging up) reach the handler through :class:`CallEvents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from voiceivr.call.media import MediaChannel


@dataclass(frozen=True)
class MediaAddress:
    host: str
    port: int


@dataclass(frozen=True)
class CallInfo:
    call_id: str  # ours (uuid4), the key in the database and the recordings
    sip_call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    from_uri: str = ""
    from_display: str = ""
    to_uri: str = ""
    # P-Asserted-Identity, set only when the INVITE came from a configured trusted proxy; never an
    # authenticator, only a hint.
    asserted_identity: str | None = None
    source_address: str = ""  # where the INVITE came from (host:port)
    remote_media: MediaAddress | None = None
    codec: str = ""
    rate: int = 8000
    headers: dict[str, str] = field(default_factory=dict)


class CallControl(Protocol):
    """Requests from the call worker to the SIP edge. Each returns at once; the SIP thread does the work."""

    def hangup(self, reason: str = "normal") -> None: ...

    def transfer(self, target: str) -> None: ...


class CallEvents(Protocol):
    """Notifications from the SIP edge to the call worker. Each must return at once (thread-safe enqueue)."""

    def on_dtmf(self, digit: str, method: str) -> None: ...

    def on_media_moved(self, new_address: MediaAddress | None) -> None: ...

    def on_dialog_replaced(self, reason: str) -> None: ...

    def on_remote_hangup(self) -> None: ...


class CallHandler(Protocol):
    def start(self, info: CallInfo, media: MediaChannel, control: CallControl) -> CallEvents:
        """Start the call's worker thread; return the object the edge sends SIP events to."""
        ...
