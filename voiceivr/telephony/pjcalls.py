"""pjsua2's ``Account`` and ``Call`` subclasses: each callback is forwarded to the edge, inside its guard.

pjsua2 calls these on the SIP thread (``onDtmfDigit`` for RFC 4733 DTMF: the media thread). The edge finds a
call's slot by its pjsua call id. The protocols name what the edge must offer each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pjsua2 as pj


class AccountTarget(Protocol):
    """What the account's callbacks call on the edge."""

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None: ...

    def _on_incoming(self, prm: Any) -> None: ...

    def _on_reg_state(self, prm: Any) -> None: ...


class CallTarget(Protocol):
    """What a call's callbacks call on the edge."""

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None: ...

    def _on_call_state(self, call: PjCall, prm: Any) -> None: ...

    def _on_media_state(self, call: PjCall) -> None: ...

    def _on_dtmf(self, pj_id: int, digit: str, method: int) -> None: ...

    def _on_transfer_status(self, call: PjCall, prm: Any) -> None: ...

    def _on_transfer_request(self, call: PjCall, prm: Any) -> None: ...

    def _on_replace_request(self, call: PjCall, prm: Any) -> None: ...

    def _on_replaced(self, old: PjCall, prm: Any) -> None: ...

    def _on_stream_destroyed(self, call: PjCall, index: int) -> None: ...


class PjAccount(pj.Account):
    def __init__(self, edge: AccountTarget) -> None:
        super().__init__()
        self._edge = edge

    def onIncomingCall(self, prm: Any) -> None:
        self._edge._guard("incoming call", self._edge._on_incoming, prm)

    def onRegState(self, prm: Any) -> None:
        self._edge._guard("registration", self._edge._on_reg_state, prm)


class PjCall(pj.Call):
    """Forwards pjsua2's callbacks to the edge, which finds the call's slot by pjsua call id."""

    def __init__(self, edge: CallTarget, account: Any, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self._edge = edge

    def onCallState(self, prm: Any) -> None:
        self._edge._guard("call state", self._edge._on_call_state, self, prm)

    def onCallMediaState(self, prm: Any) -> None:
        self._edge._guard("media state", self._edge._on_media_state, self)

    def onDtmfDigit(self, prm: Any) -> None:
        # RFC 4733: the media thread; SIP INFO: the SIP thread.
        self._edge._guard("dtmf", self._edge._on_dtmf, self.getId(), prm.digit, prm.method)

    def onCallTransferStatus(self, prm: Any) -> None:
        self._edge._guard("transfer status", self._edge._on_transfer_status, self, prm)

    def onCallTransferRequest(self, prm: Any) -> None:
        self._edge._guard("transfer request", self._edge._on_transfer_request, self, prm)

    def onCallReplaceRequest(self, prm: Any) -> None:
        self._edge._guard("replace request", self._edge._on_replace_request, self, prm)

    def onCallReplaced(self, prm: Any) -> None:
        self._edge._guard("replaced", self._edge._on_replaced, self, prm)

    def onStreamDestroyed(self, prm: Any) -> None:
        self._edge._guard("stream destroyed", self._edge._on_stream_destroyed, self, prm.streamIdx)
