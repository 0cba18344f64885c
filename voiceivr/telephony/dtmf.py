"""DTMF on the edge: digits received (RFC 4733 in RTP, or SIP INFO) go to the recording and the handler;
digits sent (the test caller) go out by either method."""

from __future__ import annotations

import time

import pjsua2 as pj

from voiceivr.telephony.streams import MediaPart

_DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "sip-info"}


class DtmfPart(MediaPart):
    """Received and sent DTMF."""

    def _on_dtmf(self, pj_id: int, digit: str, method: int) -> None:
        slot = self._slot_by_pj.get(pj_id)
        if slot is None:
            return
        how = _DTMF_METHODS.get(method, str(method))
        call = self._calls.get(pj_id)
        if how == "rfc4733" and slot.rtp_lock is not None and call is not None:
            # A digit that came in RTP: first, whose RTP is it? (pjsua2 runs this on the SIP thread.)
            self._check_media_source(slot, call, time.monotonic())
        if slot.recording is not None:
            # Written without its digit if the caller is giving a secret (voiceivr.call.secrecy).
            slot.recording.dtmf(digit, how, delivered=slot.events is not None)
        self._notify(slot, "on_dtmf", digit, how)

    def _send_dtmf(self, key: str, digits: str, method: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if method == "sip-info" else pj.PJSUA_DTMF_METHOD_RFC2833
        prm.duration = 160
        call.sendDtmf(prm)
        self._record(slot, "dtmf_sent", count=len(digits), method=method)
