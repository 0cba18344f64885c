"""The pjsua2 endpoint of the edge, created on the SIP thread: library settings (one SIP thread, null audio
device, media clock and jitter buffer), the UDP/TCP/TLS transports, codec priorities, and the account (its
registration, media transport ports, SRTP)."""

from __future__ import annotations

import logging
from typing import Any

import pjsua2 as pj

from voiceivr import __version__
from voiceivr.errors import ConfigError
from voiceivr.telephony.dialogs import DialogPart
from voiceivr.telephony.edgeconfig import PJSUA_MAX_CALLS
from voiceivr.telephony.pjcalls import PjAccount
from voiceivr.telephony.pjlog import PjLogWriter, startup_lines_logged

log = logging.getLogger(__name__)


class EndpointPart(DialogPart):
    """Endpoint, transports, codecs, account and registration."""

    def _setup(self) -> None:
        s = self.sip
        ep = pj.Endpoint()
        self._ep = ep
        # Until libInit installs our log writer pjlib prints its banner on stdout, where `voiceivr call --json`
        # and the worker's READY line go: those lines go through our logger too.
        with startup_lines_logged():
            ep.libCreate()
            cfg = pj.EpConfig()
            cfg.uaConfig.threadCnt = 0
            cfg.uaConfig.mainThreadOnly = True
            cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
            cfg.uaConfig.userAgent = f"voiceivr/{__version__}"
            for server in s.nameservers:
                # pjsip's own asynchronous resolver; without it a hostname blocks the SIP thread on getaddrinfo.
                cfg.uaConfig.nameserver.append(server)
            self._log_writer = PjLogWriter()
            cfg.logConfig.writer = self._log_writer
            cfg.logConfig.level = s.pjsip_log_level
            cfg.logConfig.consoleLevel = s.pjsip_log_level
            cfg.logConfig.decor = 0
            med = cfg.medConfig
            med.clockRate = self.rate
            med.sndClockRate = self.rate
            med.channelCount = 1
            med.audioFramePtime = 20
            med.ptime = 20
            med.quality = s.resampler_quality
            med.noVad = True
            med.ecTailLen = 0
            med.threadCnt = 1
            for name, ms in (("jbMinPre", s.jb_min_pre_ms), ("jbMaxPre", s.jb_max_pre_ms), ("jbInit", s.jb_init_ms)):
                if ms >= 0:
                    setattr(med, name, ms)
            ep.libInit(cfg)
        ep.audDevManager().setNullDev()

        tcfg = pj.TransportConfig()
        tcfg.port = self.config.port
        if self.config.host not in ("", "0.0.0.0"):
            tcfg.boundAddress = self.config.host
        if s.public_address:
            tcfg.publicAddress = s.public_address
        udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self._transports.append(udp)
        self.bound_port = int(ep.transportGetInfo(udp).localName.rsplit(":", 1)[1])
        if s.tcp:
            tcp_cfg = pj.TransportConfig()
            tcp_cfg.port = self.bound_port
            tcp_cfg.boundAddress = tcfg.boundAddress
            tcp_cfg.publicAddress = tcfg.publicAddress
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp_cfg))
        if s.tls_port:
            tls_cfg = pj.TransportConfig()
            tls_cfg.port = s.tls_port
            tls_cfg.boundAddress = tcfg.boundAddress
            tls_cfg.publicAddress = tcfg.publicAddress
            tls_cfg.tlsConfig.certFile = s.tls_cert_file
            tls_cfg.tlsConfig.privKeyFile = s.tls_key_file
            tls_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            if s.tls_ca_file:
                tls_cfg.tlsConfig.CaListFile = s.tls_ca_file
                tls_cfg.tlsConfig.verifyServer = True
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls_cfg))
        if self.config.tls_client and not s.tls_port:
            client_cfg = pj.TransportConfig()
            client_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            if tcfg.boundAddress:
                client_cfg.boundAddress = tcfg.boundAddress
            self._transports.append(ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, client_cfg))
        ep.libStart()
        self._set_codecs()
        self._create_account()

    def _set_codecs(self) -> None:
        wanted = [c.strip() for c in self.sip.codecs if c.strip()]
        available = {c.codecId.lower(): c.codecId for c in self._ep.codecEnum2()}
        missing = [c for c in wanted if c.lower() not in available]
        if missing:
            raise ConfigError(
                f"sip.codecs: pjsua2 has no codec {', '.join(missing)}",
                hint=f"available: {', '.join(sorted(available.values()))}",
            )
        for codec_id in available.values():
            self._ep.codecSetPriority(codec_id, 0)
        for rank, codec in enumerate(wanted):
            self._ep.codecSetPriority(available[codec.lower()], 255 - rank)

    def _create_account(self) -> None:
        s = self.sip
        acfg = pj.AccountConfig()
        host = s.public_address or (self.config.host if self.config.host not in ("", "0.0.0.0") else "127.0.0.1")
        acfg.idUri = s.register_aor or f"sip:{self.config.name}@{host}:{self.bound_port}"
        if s.register_uri and self.config.register:
            acfg.regConfig.registrarUri = s.register_uri
            if self.config.contact:
                acfg.sipConfig.contactForced = self.config.contact
            acfg.regConfig.timeoutSec = s.register_expires_s
            acfg.regConfig.retryIntervalSec = 30
            if s.register_user:
                cred = pj.AuthCredInfo("digest", s.register_realm or "*", s.register_user, 0, s.register_password)
                acfg.sipConfig.authCreds.append(cred)
            self.registered = False
        else:
            acfg.regConfig.registerOnAdd = False
        if self.config.credentials:
            user, password = self.config.credentials
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        mcfg = acfg.mediaConfig
        if self.config.rtp_port_min:
            mcfg.transportConfig.port = self.config.rtp_port_min
            mcfg.transportConfig.portRange = max(0, self.config.rtp_port_max - self.config.rtp_port_min)
        media_host = self.config.host if self.config.media_host is None else self.config.media_host
        if media_host not in ("", "0.0.0.0"):
            mcfg.transportConfig.boundAddress = media_host
        if s.public_address:
            mcfg.transportConfig.publicAddress = s.public_address
        mcfg.srtpUse = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                        "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[s.srtp]
        mcfg.srtpSecureSignaling = 1 if s.srtp_require_tls else 0
        # A server behind a SIP proxy must not rewrite its Contact from what a registrar saw.
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acc = PjAccount(self)
        acc.create(acfg, True)
        self._account = acc

    # ----------------------------------------------------------------------------------- registration

    def _on_reg_state(self, prm: Any) -> None:
        self.registration_status = int(prm.code)
        self.registered = 200 <= prm.code < 300 and prm.expiration > 0
        level = logging.INFO if self.registered else logging.WARNING
        log.log(level, "trunk registration", extra={"status": prm.code, "expires": prm.expiration})
