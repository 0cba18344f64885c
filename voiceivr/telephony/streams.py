"""Each call's audio stream on the SIP thread: wiring the :class:`~voiceivr.telephony.bridge.MediaBridge` to
the call's conference port when media starts or moves, the stream's counters when it ends, the RTP timeout,
and the media source lock (:mod:`voiceivr.telephony.rtplock`) following re-INVITEs and latched sources."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pjsua2 as pj

from voiceivr.call.handler import MediaAddress
from voiceivr.telephony.bridge import MediaBridge
from voiceivr.telephony.pjcalls import PjCall
from voiceivr.telephony.rtplock import LockStep, SourceLock, parse_address
from voiceivr.telephony.slots import CallSlot, EdgeBase

log = logging.getLogger(__name__)


def _media_address(text: str) -> MediaAddress | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return MediaAddress(host.strip("[]"), int(port))


def addr_dict(addr: MediaAddress | None) -> dict[str, Any] | None:
    return {"host": addr.host, "port": addr.port} if addr else None


class MediaPart(EdgeBase):
    """Media state, stream counters, RTP timeout and source lock of every call."""

    def _on_stream_destroyed(self, call: PjCall, index: int) -> None:
        """The last moment the stream's counters can be read: what arrived, what was lost, and what the
        jitter buffer threw away (a discarded frame is a hole in what the session heard)."""
        slot = self._slot_by_pj.get(call.getId())
        if slot is None:
            return
        stat = call.getStreamStat(index)
        rx, jb = stat.rtcp.rxStat, stat.jbuf
        slot.media_stats = {"rtp_packets": int(rx.pkt), "rtp_lost": int(rx.loss), "rtp_discarded": int(rx.discard),
                            "rtp_reordered": int(rx.reorder), "rtp_duplicated": int(rx.dup),
                            "jb_lost": int(jb.lost), "jb_discarded": int(jb.discard), "jb_empty": int(jb.empty),
                            "jb_avg_delay_ms": int(jb.avgDelayMsec), "jb_max_delay_ms": int(jb.maxDelayMsec)}

    def _on_media_state(self, call: PjCall) -> None:
        pj_id = call.getId()
        slot = self._slot_by_pj.get(pj_id)
        if slot is None:
            return
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status not in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                self._record(slot, "media", status=int(mi.status))
                return
            aud = call.getAudioMedia(mi.index)
            if slot.bridge is None:
                slot.bridge = MediaBridge(f"vivr{pj_id}", slot.channel, slot.recording)
            port = aud.getPortId()
            if port != slot.conf_slot:
                slot.bridge.connect(aud)
                slot.conf_slot = port
            si = call.getStreamInfo(mi.index)
            remote = _media_address(si.remoteRtpAddress)
            codec = f"{si.codecName}/{si.codecClockRate}"
            hold = mi.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            if not slot.media_ready:
                slot.media_ready = True
                slot.remote_media = remote
                slot.info = dataclasses.replace(slot.info, codec=codec, remote_media=remote or slot.info.remote_media,
                                     sip_call_id=slot.info.sip_call_id or ci.callIdString)
                self._record(slot, "media_started", codec=codec, remote=addr_dict(remote), srtp=self.sip.srtp)
                if slot.recording:
                    slot.recording.update_sip(codec=codec, remote_media=addr_dict(remote))
                self._lock_media(slot, call, mi.index, si)
                self._maybe_start(slot)
            elif remote != slot.remote_media:
                slot.remote_media = remote
                self._record(slot, "media_moved", remote=addr_dict(remote), codec=codec, hold=hold)
                self._notify(slot, "on_media_moved", remote)
                self._lock_media(slot, call, mi.index, si)
            elif hold:
                self._record(slot, "remote_hold")
            return

    def _check_rtp(self, slot: CallSlot, call: PjCall, now: float) -> None:
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE or not (mi.dir & pj.PJMEDIA_DIR_DECODING):
                slot.rtp_rx_at = now  # on hold: the caller is not expected to send
                return
            rx = call.getStreamStat(mi.index).rtcp.rxStat.pkt
            if rx != slot.rtp_rx:
                slot.rtp_rx, slot.rtp_rx_at = rx, now
            elif now - slot.rtp_rx_at > self.sip.rtp_timeout_s:
                log.warning("no RTP from caller: hanging up", extra={"call_id": slot.key,
                                                                      "silent_s": round(now - slot.rtp_rx_at, 1)})
                self._record(slot, "rtp_timeout", silent_s=round(now - slot.rtp_rx_at, 1))
                self._hangup(slot.key, "edge", "rtp timeout")
            return

    # ------------------------------------------------------------------------ media source lock (rtplock.py)

    def _lock_media(self, slot: CallSlot, call: PjCall, index: int, si: Any) -> None:
        """Media started (a new lock) or a re-INVITE moved it (the lock follows the new SDP address)."""
        ti = call.getMedTransportInfo(index)
        slot.media_index = index
        args = (parse_address(si.remoteRtpAddress), parse_address(si.remoteRtcpAddress),
                parse_address(ti.localRtpName), parse_address(ti.localRtcpName))
        if slot.rtp_lock is None:
            slot.rtp_lock = SourceLock.start(*args, now=time.monotonic(), latch_s=self.sip.rtp_latch_s,
                                             enforce=self.sip.rtp_source_lock)
        else:
            self._lock_steps(slot, slot.rtp_lock.renegotiated(*args, source_now=parse_address(ti.srcRtpName)))

    def _check_media_source(self, slot: CallSlot, call: PjCall, now: float) -> None:
        """Where the stream's packets come from, on the SIP thread (never the media thread)."""
        assert slot.rtp_lock is not None
        try:
            ti = call.getMedTransportInfo(slot.media_index)
        except pj.Error:  # no such stream (any more)
            return
        self._lock_steps(slot, slot.rtp_lock.observe(
            parse_address(ti.localRtpName), parse_address(ti.localRtcpName), parse_address(ti.srcRtpName),
            parse_address(ti.srcRtcpName), now))

    def _lock_steps(self, slot: CallSlot, steps: list[LockStep]) -> None:
        for step in steps:
            where = addr_dict(step.address)
            if step.kind == "moved":
                # Like a re-INVITE moving the media: the call's privileges drop and the gate audits it.
                log.log(logging.INFO if step.how == "latched" else logging.WARNING, "RTP source changed",
                        extra={"call_id": slot.key, "how": step.how,
                               "source": f"{step.address.host}:{step.address.port}"})
                self._record(slot, "media_moved", remote=where, via="rtp", how=step.how)
                self._notify(slot, "on_media_moved", step.address)
            elif step.kind == "locked":
                self._record(slot, "media_locked", channel=step.channel, remote=where)
            else:
                log.warning("cannot lock the media source", extra={"call_id": slot.key, "channel": step.channel,
                                                                   "reason": step.how})
                self._record(slot, "media_lock_failed", channel=step.channel, remote=where, reason=step.how)
