"""Options of the SIP edge with real peers: TLS + SRTP, REGISTER with digest auth to a Kamailio registrar,
a full worker answering 503 + Retry-After, and a broken call handler that must not take the server down."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.sip import siptools
from tests.support.wait import wait_until
from voiceivr.telephony.kamailio import module_dir

pytestmark = pytest.mark.slow


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (scripts/test installs it)")
def test_tls_signalling_with_mandatory_srtp(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    tls_port = free_tcp_port()
    with siptools.serve(tmp_path, VOICEIVR_SIP_TLS_PORT=str(tls_port), VOICEIVR_SIP_TLS_CERT_FILE=str(cert),
                        VOICEIVR_SIP_TLS_KEY_FILE=str(key), VOICEIVR_SIP_SRTP="mandatory") as ivr:
        uri = f"sip:ivr@127.0.0.1:{tls_port};transport=tls"
        secure = siptools.peer({"uri": uri, "tls": True, "srtp": "mandatory",
                                "steps": [["wait_prompt", 3], ["dtmf", "1"], ["sleep", 0.5], ["hangup"]]}, ivr.env)
        report = secure[-1]
        assert report["answered"] and report["loud_frames"] > 20  # the prompt decrypted at the caller
        log = next(x for x in ivr.call_logs(1) if x["sip_call_id"] == report["sip_call_id"])
        assert log["digits"] == [["1", "rfc4733"]]
        # The same server refuses plain RTP: SRTP is mandatory.
        plain = siptools.peer({"uri": uri, "tls": True, "srtp": "off", "steps": [["sleep", 0.2]]}, ivr.env)
        assert not plain[-1]["answered"] and plain[-1]["status"] == 488


REGISTRAR_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
disable_tcp=yes
dns=no
rev_dns=no
mpath="{mpath}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "kex.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
request_route {{
	if (is_method("REGISTER")) {{
		if (!pv_www_authenticate("voiceivr.test", "s3cret", "0")) {{
			xlog("L_NOTICE", "CHALLENGE user=$fU\\n");
			www_challenge("voiceivr.test", "0");
			exit;
		}}
		if (!save("location")) {{
			sl_reply_error();
		}}
		xlog("L_NOTICE", "REGISTERED user=$au contact=$ct\\n");
		exit;
	}}
	sl_send_reply("404", "Not here");
}}
"""


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="Kamailio is not installed (scripts/test installs it)")
def test_register_to_a_trunk_with_digest_auth(tmp_path: Path) -> None:
    reg_port = siptools.free_udp_port()
    cfg = tmp_path / "registrar.cfg"
    cfg.write_text(REGISTRAR_CFG.format(port=reg_port, mpath=module_dir()))
    (tmp_path / "run").mkdir()
    log_path = tmp_path / "registrar.log"
    with log_path.open("wb") as log:
        registrar = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(tmp_path / "run"),
                                      "-w", str(tmp_path / "run"), "-P", str(tmp_path / "k.pid")],
                                     stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = siptools.UdpProbe()
        try:  # the registrar answers anything but REGISTER with 404 once it listens
            wait_until(lambda: probe.options(reg_port, 0.2) == 404, timeout=1.0)
        finally:
            probe.close()
        env = {"VOICEIVR_SIP_REGISTER_URI": f"sip:127.0.0.1:{reg_port}",
               "VOICEIVR_SIP_REGISTER_AOR": "sip:trunkuser@127.0.0.1",
               "VOICEIVR_SIP_REGISTER_USER": "trunkuser", "VOICEIVR_SIP_REGISTER_PASSWORD": "s3cret",
               "VOICEIVR_SIP_REGISTER_REALM": "voiceivr.test"}
        with siptools.serve(tmp_path / "ok", kamailio="yes", workers=2, **env) as ivr:
            deadline = time.monotonic() + 10
            while "REGISTERED" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            text = log_path.read_text()
            assert "CHALLENGE user=trunkuser" in text  # digest: first challenged...
            # ...then accepted, with the dispatcher's public address as Contact (not a worker's port)
            assert f"REGISTERED user=trunkuser contact=<sip:trunkuser@127.0.0.1:{ivr.port}>" in text
            assert text.count("REGISTERED") == 1  # one registration for the node, not one per worker
            assert "trunk registration" in ivr.log() and "s3cret" not in ivr.log()
    finally:
        registrar.terminate()
        registrar.wait(10)


def test_full_worker_answers_503_with_retry_after_and_broken_handler_is_contained(tmp_path: Path) -> None:
    with siptools.serve(tmp_path / "full", VOICEIVR_SIP_CALLS_PER_WORKER="1", VOICEIVR_SIP_RETRY_AFTER_S="7") as ivr:
        first = siptools.start_peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "steps": [["sleep", 3], ["hangup"]]},
                                    ivr.env)
        try:
            siptools.read_json_line(first, 10)
            call_id = uuid.uuid4().hex
            ivr.probe.send(siptools.invite_msg(ivr.port, ivr.probe.port, call_id=call_id), ivr.port)
            answers = [a for a in ivr.probe.recv_all(2.0) if call_id.encode() in a]
            final = [a for a in answers if (siptools.status_of(a) or 0) >= 200]
            assert final and siptools.status_of(final[0]) == 503 and b"Retry-After: 7" in final[0]
        finally:
            siptools.finish_peer(first, 20)

    with siptools.serve(tmp_path / "broken", VOICEIVR_SIP_HANDLER="tests.sip.sip_handlers:BrokenHandler") as ivr:
        for _ in range(2):
            out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "steps": [["wait_end", 5]]}, ivr.env)
            assert out[-1]["by"] == "far end"  # answered, then hung up by the edge
        assert "call handler failed to start" in ivr.log()
        assert ivr.alive()
