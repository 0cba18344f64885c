"""Each call's SIP dialog on the edge: an incoming INVITE (admission, refusal, answer) or a call we place,
its state changes and dialog tags, transfer (REFER out, REFER in refused or followed), Replaces, re-INVITE,
and the end of the call (its slot's port freed, its worker woken, its recording closed)."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

import pjsua2 as pj

from voiceivr.call.handler import CallHandler, CallInfo, MediaAddress
from voiceivr.call.media import MediaChannel
from voiceivr.telephony.dtmf import DtmfPart
from voiceivr.telephony.edgeconfig import SOURCE_HEADER, SipEdgeError
from voiceivr.telephony.pjcalls import PjCall
from voiceivr.telephony.recording import CallRecording
from voiceivr.telephony.sipmsg import (
    SipMessage,
    accepts_sdp,
    address_in,
    host_of,
    parse_message,
    parse_name_addr,
    parse_sdp_audio,
)
from voiceivr.telephony.slots import CallRemote, CallSlot
from voiceivr.telephony.streams import addr_dict

log = logging.getLogger(__name__)

_SKIP_HEADERS = frozenset({"authorization", "proxy-authorization", "via", "route", "record-route", "content-length",
                           SOURCE_HEADER.lower()})


class DialogPart(DtmfPart):
    """Incoming and outgoing calls, their dialogs, and their end."""

    # -------------------------------------------------------------------------------------- incoming calls

    def _on_incoming(self, prm: Any) -> None:
        raw = prm.rdata.wholeMsg
        source = prm.rdata.srcAddress
        call = PjCall(self, self._account, prm.callId)
        self._calls[prm.callId] = call
        msg = parse_message(raw)
        if not accepts_sdp(msg.get("accept")):
            # RFC 3261 21.4.7 / RFC 4475 3.3.15: our answer is SDP, which this caller says it cannot take.
            self._reject(call, 406, "Not Acceptable", ("Accept", "application/sdp"))
            return
        real_source = self._real_source(source, msg)
        refusal = self._admission.check(real_source, self._inbound_calls_from)
        if refusal is not None:
            log.info("call refused", extra={"status": refusal.status, "why": refusal.reason, "source": real_source})
            self._reject(call, refusal.status, refusal.phrase, refusal.header())
            return
        full = len(self._slots) >= self.config.max_calls
        if self._stopping or self._draining or full or self._handler is None:
            self.rejected_busy += 1
            why = "draining" if self._draining or self._stopping else "no capacity"
            log.info(f"call refused: {why}", extra={"active": len(self._slots), "source": source})
            if not self.config.front_proxy:  # behind Kamailio a full worker is not a refusal: the next one is tried
                self._admission.refuse_full()
            self._reject(call, 503, "Service Unavailable", ("Retry-After", str(self.sip.retry_after_s)))
            return
        key = str(uuid.uuid4())
        info = self._info_from_invite(key, msg, source)
        slot = self._new_slot(key, "inbound", self._handler, info, prm.callId)
        log.info("incoming call", extra={"call_id": key, "sip_call_id": info.sip_call_id,
                                         "source": info.source_address})
        op = pj.CallOpParam(True)
        op.statusCode = 200
        try:
            call.answer(op)
        except pj.Error as exc:
            # pjsua2 could not answer (e.g. no codec in common): it has answered the INVITE with an error.
            slot.hangup_by, slot.hangup_reason = "edge", f"answer failed: {exc.info()}"
            log.warning("answer failed", extra={"call_id": key, "status": exc.status})

    @staticmethod
    def _reject(call: PjCall, status: int, reason: str, header: tuple[str, str] | None = None) -> None:
        """Answer an INVITE with a final error; the Call stays in ``_calls`` until its DISCONNECTED."""
        op = pj.CallOpParam(True)
        op.statusCode = status
        op.reason = reason
        if header is not None:
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = header
            op.txOption.headers.append(hdr)
        call.answer(op)

    def _inbound_calls_from(self, host: str) -> int:
        return sum(1 for slot in self._slots.values()
                   if slot.direction == "inbound" and host_of(slot.info.source_address) == host)

    def _info_from_invite(self, key: str, msg: SipMessage, source: str) -> CallInfo:
        source = self._real_source(source, msg)
        from_ = parse_name_addr(msg.get("from"))
        to = parse_name_addr(msg.get("to"))
        asserted = None
        if address_in(source, self._trusted):
            for value in msg.get_all("p-asserted-identity"):
                asserted = parse_name_addr(value).uri
                break
        sdp = parse_sdp_audio(msg.body) if "sdp" in msg.get("content-type").lower() else None
        headers = {"request-uri": msg.request_uri}
        for name, value in msg.headers:
            if name not in _SKIP_HEADERS and name not in headers:
                headers[name] = value
        return CallInfo(
            call_id=key,
            sip_call_id=msg.get("call-id"),
            remote_tag=from_.tag,
            from_uri=from_.uri,
            from_display=from_.display,
            to_uri=to.uri,
            asserted_identity=asserted,
            source_address=source,
            remote_media=MediaAddress(sdp.host, sdp.port) if sdp and sdp.host else None,
            rate=self.rate,
            headers=headers,
        )

    def _real_source(self, source: str, msg: SipMessage) -> str:
        """Who sent a request: behind our own dispatcher, the address it wrote down (it deletes any such
        header arriving from outside, so the header is believed only when the packet came from it)."""
        if self.config.front_proxy and host_of(source) == self.config.front_proxy:
            return msg.get(SOURCE_HEADER) or source
        return source

    def _new_slot(self, key: str, direction: str, handler: CallHandler, info: CallInfo, pj_id: int) -> CallSlot:
        channel = MediaChannel(rate=self.rate)
        recording = None
        if self.config.recordings_dir is not None and self.writer is not None:
            recording = CallRecording(self.config.recordings_dir, key, self.rate, _info_dict(info),
                                      secret=channel.secret)
            recording.update_sip(direction=direction)
            self.writer.add(recording)
        slot = CallSlot(key=key, direction=direction, handler=handler, channel=channel,
                        control=CallRemote(self, key), info=info, pj_id=pj_id, recording=recording)
        self._slots[key] = slot
        self._slot_by_pj[pj_id] = slot
        return slot

    # -------------------------------------------------------------------------------------- outgoing calls

    def _make_call(self, uri: str, handler: CallHandler, headers: dict[str, str], dtmf_method: str) -> CallSlot:
        if len(self._slots) >= self.config.max_calls:
            raise SipEdgeError(f"already {len(self._slots)} calls in this process (limit {self.config.max_calls})")
        call = PjCall(self, self._account)
        op = pj.CallOpParam(True)
        for name, value in headers.items():
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = name, value
            op.txOption.headers.append(hdr)
        key = str(uuid.uuid4())
        info = CallInfo(call_id=key, to_uri=uri, rate=self.rate)
        try:
            call.makeCall(uri, op)
        except pj.Error as exc:
            raise SipEdgeError(f"cannot call {uri}: {exc.info()}") from None
        pj_id = call.getId()
        self._calls[pj_id] = call
        slot = self._new_slot(key, "outbound", handler, info, pj_id)
        slot.dtmf_method_out = dtmf_method
        return slot

    # ----------------------------------------------------------------------------------------- call events

    def _on_call_state(self, call: PjCall, prm: Any) -> None:
        ci = call.getInfo()
        pj_id = ci.id
        if call in self._pending_calls:
            self._pending_calls.remove(call)
            self._calls[pj_id] = call
        slot = self._slot_by_pj.get(pj_id)
        if slot is not None and slot.pj_id == pj_id:
            if prm.e.type == pj.PJSIP_EVENT_TSX_STATE:
                self._learn_tags(slot, prm.e.body.tsxState)
            if ci.state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED) and not slot.answered:
                slot.answered = True
                if slot.direction == "outbound":
                    slot.info = dataclasses.replace(slot.info, sip_call_id=ci.callIdString, from_uri=ci.localUri)
                self._record(slot, "answered", sip_call_id=ci.callIdString)
                self._maybe_start(slot)
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and not slot.confirmed:
                slot.confirmed = True
                self._record(slot, "confirmed")
        if ci.state != pj.PJSIP_INV_STATE_DISCONNECTED:
            return
        if slot is not None and slot.pj_id == pj_id:
            self._end_slot(slot, ci.lastStatusCode, ci.lastReason)
        # The last reference to the pjsua2 Call goes here, inside its own DISCONNECTED callback.
        self._calls.pop(pj_id, None)

    def _learn_tags(self, slot: CallSlot, tsx_state: Any) -> None:
        """Dialog tags from the messages of the INVITE transaction (pjsua2's CallInfo has none)."""
        if slot.info.local_tag and slot.info.remote_tag:
            return
        sent = parse_message(tsx_state.tsx.lastTx.wholeMsg or "")
        received = parse_message(tsx_state.src.rdata.wholeMsg or "")
        local_tag, remote_tag = slot.info.local_tag, slot.info.remote_tag
        if slot.direction == "inbound":
            local_tag = local_tag or parse_name_addr(sent.get("to")).tag
        else:
            local_tag = local_tag or parse_name_addr(sent.get("from")).tag or parse_name_addr(received.get("from")).tag
            remote_tag = remote_tag or parse_name_addr(received.get("to")).tag
        if (local_tag, remote_tag) != (slot.info.local_tag, slot.info.remote_tag):
            slot.info = dataclasses.replace(slot.info, local_tag=local_tag, remote_tag=remote_tag)
            if slot.recording:
                slot.recording.update_sip(local_tag=local_tag, remote_tag=remote_tag)

    # --------------------------------------------------------------------------------------- end of a call

    def _end_slot(self, slot: CallSlot, status: int, reason: str) -> None:
        """The call is over: free its port, wake its worker, close its recording. SIP thread only."""
        if slot.ended.is_set():
            return
        self._slots.pop(slot.key, None)
        if self._slot_by_pj.get(slot.pj_id) is slot:
            self._slot_by_pj.pop(slot.pj_id, None)
        by = slot.hangup_by or "caller"
        gaps: dict[str, float] = {}
        if slot.bridge is not None:
            gaps = slot.bridge.gaps.summary()
            errors = slot.bridge.errors
            slot.bridge.destroy()
            slot.bridge = None
            if errors:
                log.warning("media callback errors", extra={"call_id": slot.key, "errors": errors})
        if by == "caller" and slot.started:
            # Before the channel closes, so a worker that stops reading at close already has the event.
            self._notify(slot, "on_remote_hangup")
        slot.channel.close()
        slot.end_status, slot.end_reason = status, reason
        duration = round(time.monotonic() - slot.created, 3)
        summary = {"call_id": slot.key, "by": by, "reason": slot.hangup_reason or reason, "status": status,
                   "duration_s": duration, "frame_gaps": gaps, "inbox_dropped": slot.channel.inbox_dropped,
                   "media": slot.media_stats}
        self._record(slot, "hangup", by=by, status=status, reason=slot.hangup_reason or reason)
        if slot.recording is not None:
            slot.recording.finish(hangup={"by": by, "status": status, "reason": slot.hangup_reason or reason},
                                  frame_gaps=gaps, media=slot.media_stats)
        self.ended.append(summary)
        del self.ended[:-200]
        log.info("call ended", extra={k: v for k, v in summary.items() if k != "frame_gaps"})
        slot.ended.set()

    # ---------------------------------------------------------- transfer, Replaces, re-INVITE (SIP thread)

    def _transfer(self, key: str, target: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        slot.transfer_target = target
        self._record(slot, "transfer_requested", target=target)
        try:
            call.xfer(target, pj.CallOpParam(True))
        except pj.Error as exc:
            self._record(slot, "transfer_result", ok=False, status=exc.status, reason=exc.info())
            self._notify(slot, "on_transfer_result", False, 0)

    def _on_transfer_status(self, call: PjCall, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        if slot is None:
            return
        code = int(prm.statusCode)
        if code < 200 and not prm.finalNotify:
            return
        ok = 200 <= code < 300
        self._record(slot, "transfer_result", ok=ok, status=code, reason=prm.reason)
        self._notify(slot, "on_transfer_result", ok, code)
        prm.cont = False
        if ok:
            # The caller now talks to the transfer target: our leg is done.
            self.submit(lambda: self._hangup(slot.key, "agent", "transferred"))

    def _on_transfer_request(self, call: PjCall, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        if not self.config.accept_refer:
            # A REFER from the far end asks us to place a call on its behalf: an IVR never does (toll fraud).
            prm.statusCode = 603
            if slot is not None:
                self._record(slot, "refer_refused", target=prm.dstUri)
            return
        # The test caller follows it like a phone: pjsua2 places the new call on this Call object, which we
        # keep (as every Call) until its DISCONNECTED callback.
        new_call = PjCall(self, self._account)
        self._pending_calls.append(new_call)
        prm.newCall = new_call
        if slot is not None:
            slot.transferred_to = prm.dstUri

    def _on_replace_request(self, call: PjCall, prm: Any) -> None:
        slot = self._slot_by_pj.get(call.getId())
        source = self._real_source(prm.rdata.srcAddress, parse_message(prm.rdata.wholeMsg))
        if slot is None:
            prm.statusCode = 481
            return
        # RFC 3891 8: only a party of the dialog (same source) or a trusted proxy may replace it.
        if host_of(source) != host_of(slot.info.source_address or source) and not address_in(source, self._trusted):
            prm.statusCode = 403
            prm.reason = "Replaces not authorized"
            self._record(slot, "replace_refused", source=source)
            return
        self._record(slot, "replace_accepted", source=source)

    def _on_replaced(self, old: PjCall, prm: Any) -> None:
        slot = self._slot_by_pj.get(old.getId())
        new_call = PjCall(self, self._account, prm.newCallId)
        self._calls[prm.newCallId] = new_call
        prm.newCall = new_call
        if slot is None:
            return
        self._slot_by_pj.pop(slot.pj_id, None)
        slot.pj_id = prm.newCallId
        slot.conf_slot = -1
        self._slot_by_pj[prm.newCallId] = slot
        new_info = new_call.getInfo()
        slot.info = dataclasses.replace(slot.info, sip_call_id=new_info.callIdString)
        self._record(slot, "dialog_replaced", sip_call_id=new_info.callIdString, remote=new_info.remoteUri)
        if slot.recording:
            slot.recording.update_sip(replaced_by=new_info.callIdString)
        self._notify(slot, "on_dialog_replaced", "replaces")

    def _reinvite(self, key: str) -> None:
        slot = self._slots.get(key)
        call = self._calls.get(slot.pj_id) if slot else None
        if slot is None or call is None:
            return
        op = pj.CallOpParam(True)
        op.opt.flag = pj.PJSUA_CALL_REINIT_MEDIA
        call.reinvite(op)
        self._record(slot, "reinvite_sent")


def _info_dict(info: CallInfo) -> dict[str, Any]:
    return {
        "call_id": info.call_id,
        "sip_call_id": info.sip_call_id,
        "from_uri": info.from_uri,
        "from_display": info.from_display,
        "to_uri": info.to_uri,
        "remote_tag": info.remote_tag,
        "asserted_identity": info.asserted_identity,
        "source_address": info.source_address,
        "remote_media": addr_dict(info.remote_media),
        "rate": info.rate,
        "headers": dict(info.headers),
    }
