"""Settings checks, the INVITE -> CallInfo mapping, handler loading and the Kamailio configuration."""

from __future__ import annotations

import dataclasses
import gc
import shutil
import subprocess
import weakref
from pathlib import Path

import pytest

from voiceivr.errors import ConfigError
from voiceivr.settings import Settings, SipSettings
from voiceivr.telephony import kamailio
from voiceivr.telephony.edge import SOURCE_HEADER, EdgeConfig, SipEdge
from voiceivr.telephony.sipmsg import parse_message
from voiceivr.telephony.supervisor import ServeError, rtp_ranges
from voiceivr.telephony.worker import freeze_startup_heap, load_handler

INVITE = (
    "INVITE sip:ivr@10.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK1\r\n"
    'f: "Jane" <sip:jane@example.net>;tag=ft\r\nt: <sip:ivr@10.0.0.1>\r\ni: cid-1\r\nCSeq: 1 INVITE\r\n'
    "P-Asserted-Identity: <sip:+15550001@trunk.example.net>\r\n"
    "Authorization: Digest secret\r\n"
    f"{SOURCE_HEADER}: 203.0.113.7:5060\r\n"
    "Content-Type: application/sdp\r\n\r\n"
    "v=0\r\nc=IN IP4 203.0.113.8\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def edge(**sip: object) -> SipEdge:
    return SipEdge(EdgeConfig(sip=dataclasses.replace(SipSettings(), **sip), front_proxy="127.0.0.1"), None)


def test_call_info_from_invite_believes_pai_only_from_trusted_sources() -> None:
    untrusted = edge()._info_from_invite("k", parse_message(INVITE), "198.51.100.1:5060")
    assert untrusted.asserted_identity is None
    assert (untrusted.sip_call_id, untrusted.remote_tag, untrusted.from_display) == ("cid-1", "ft", "Jane")
    assert untrusted.source_address == "198.51.100.1:5060"  # the header counts only from our own Kamailio
    assert untrusted.remote_media is not None and untrusted.remote_media.port == 4000
    assert "authorization" not in untrusted.headers and SOURCE_HEADER.lower() not in untrusted.headers
    trusted = edge(trusted_proxies=["203.0.113.0/24"])._info_from_invite("k", parse_message(INVITE),
                                                                        "127.0.0.1:5060")
    assert trusted.source_address == "203.0.113.7:5060"
    assert trusted.asserted_identity == "sip:+15550001@trunk.example.net"


@pytest.mark.parametrize("change, message", [
    ({"media_rate": 11025}, "8000 or 16000"),
    ({"resampler_quality": 4}, "5-10"),
    ({"srtp": "sometimes"}, "off, optional or mandatory"),
    ({"tls_port": 5061}, "tls_cert_file"),
    ({"trusted_proxies": ["proxy.example.net"]}, "not an IP address"),
])
def test_bad_settings_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        edge(**change)


def test_calls_per_worker_is_capped_at_the_wheel_limit() -> None:
    with pytest.raises(ConfigError, match="1-4"):
        SipEdge(EdgeConfig(sip=SipSettings(), max_calls=5), None)


def test_load_handler_errors_are_clear() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match=r"sip\.handler is not set"):
        load_handler("", settings)
    with pytest.raises(ConfigError, match="cannot import"):
        load_handler("no_such_module_here:Factory", settings)
    with pytest.raises(ConfigError, match="has no Nope"):
        load_handler("voiceivr.settings:Nope", settings)
    with pytest.raises(ConfigError, match="no start"):
        load_handler("voiceivr.settings:SipSettings", settings)
    handler = load_handler("tests.sip.sip_handlers:ScriptedIvr", settings)
    assert callable(handler.start)


def test_rtp_ranges_split_evenly() -> None:
    assert rtp_ranges(0, 0, 3) == [(0, 0)] * 3
    assert rtp_ranges(40000, 40999, 2) == [(40000, 40499), (40500, 40999)]
    with pytest.raises(ServeError, match="too small"):
        rtp_ranges(40000, 40010, 4)


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="Kamailio is not installed (scripts/test installs it)")
def test_generated_kamailio_config_is_accepted_by_kamailio(tmp_path: Path) -> None:
    for host, sip in (("127.0.0.1", SipSettings()), ("0.0.0.0", SipSettings(flood_limit=0)),
                      ("127.0.0.1", SipSettings(tcp=True, public_address="198.51.100.20"))):
        files = kamailio.write_config(tmp_path / host, sip, host, 5099,
                                      [kamailio.Worker("127.0.0.1", 5101), kamailio.Worker("127.0.0.1", 5102)])
        kamailio.check_config("kamailio", files)
        assert "sip:127.0.0.1:5102" in files.dispatcher_list.read_text()
        text = files.config.read_text()
        assert "@" + "LISTEN@" not in text and "dns=no" in text
    broken = tmp_path / "broken.cfg"
    broken.write_text("#!KAMAILIO\nrequest_route { this is not kamailio }\n")
    bad = dataclasses.replace(files, config=broken)
    with pytest.raises(ConfigError, match="rejects the generated"):
        kamailio.check_config("kamailio", bad)
    assert subprocess.run(["kamailio", "-v"], capture_output=True).returncode == 0


def test_kamailio_mode_setting() -> None:
    assert kamailio.find_kamailio(SipSettings(kamailio="no")) is None
    # auto without Kamailio installed: serve falls back to one worker on the port (and says so)
    assert kamailio.find_kamailio(SipSettings(kamailio="auto", kamailio_binary="/nonexistent/kamailio")) is None
    with pytest.raises(ConfigError, match="auto, yes or no"):
        kamailio.find_kamailio(SipSettings(kamailio="maybe"))
    with pytest.raises(ConfigError, match="not installed"):
        kamailio.find_kamailio(SipSettings(kamailio="yes", kamailio_binary="/nonexistent/kamailio"))


def test_serve_without_a_call_session_says_which_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from voiceivr.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOICEIVR_SIP_HANDLER", "")
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "sip.handler is not set" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["call", "ivr@127.0.0.1"])
    assert bad.exit_code == 1 and "is not a SIP URI" in bad.output


def test_serve_preflight_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real call session needs a migrated database and a published dialplan: serve says so before it
    starts any worker."""
    from click.testing import CliRunner

    from voiceivr.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICEIVR_SIP_HANDLER", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 1 and "has no voiceivr schema" in result.output and "Traceback" not in result.output
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 1 and "no published dialplan" in result.output
    assert "voiceivr dialplan publish" in result.output


def test_the_startup_heap_is_frozen_out_of_full_collections() -> None:
    class Loaded:  # stands for a model or the dialplan: loaded at start, kept for the process's life
        pass

    loaded = [Loaded() for _ in range(1000)]
    try:
        frozen = freeze_startup_heap()
        assert frozen >= 1000
        assert not any(isinstance(o, Loaded) for o in gc.get_objects())  # full collections no longer walk them
        garbage = [Loaded()]
        garbage.append(garbage)  # a cycle made by a call after start: still collected
        probe = weakref.ref(garbage[0])
        del garbage
        gc.collect()
        assert probe() is None
    finally:
        gc.unfreeze()
    assert loaded
