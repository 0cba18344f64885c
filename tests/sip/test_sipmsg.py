"""Parsing raw SIP text: headers (compact forms, folding), name-addr, SDP, trusted-proxy matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiceivr.telephony.sipmsg import (
    accepts_sdp,
    address_in,
    canonical_name,
    host_of,
    parse_message,
    parse_name_addr,
    parse_networks,
    parse_sdp_audio,
    split_list,
)

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "sip-torture"
if not TORTURE.exists():
    TORTURE = Path("/work/shared/sip-torture")

COMPACT_INVITE = (
    "\r\nINVITE sip:ivr@10.0.0.1 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n"
    'f: "Doe, Jane" <sip:+15550001@trunk.example.net;user=phone>;tag=abc\r\n'
    "t: <sip:ivr@10.0.0.1>\r\n"
    "i: compact-1@192.0.2.7\r\n"
    "CSeq: 1 INVITE\r\n"
    "P-Asserted-Identity: <sip:+15550001@trunk.example.net>,\r\n"
    " <tel:+15550001>\r\n"
    "X-Folded: first\r\n\tsecond\r\n"
    "c: application/sdp\r\n"
    "l: 120\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=sendonly\r\nm=video 40002 RTP/AVP 31\r\nc=IN IP4 192.0.2.9\r\n"
)


def test_compact_forms_folding_and_lists() -> None:
    msg = parse_message(COMPACT_INVITE)
    assert msg.is_request and msg.method == "INVITE" and msg.request_uri == "sip:ivr@10.0.0.1"
    assert msg.get("Call-ID") == msg.get("i") == "compact-1@192.0.2.7"
    assert canonical_name(" F ") == "from"
    assert msg.get("x-folded") == "first second"
    assert msg.get_all("P-Asserted-Identity") == ["<sip:+15550001@trunk.example.net>", "<tel:+15550001>"]
    sender = parse_name_addr(msg.get("from"))
    assert (sender.display, sender.uri, sender.tag) == ("Doe, Jane", "sip:+15550001@trunk.example.net;user=phone",
                                                        "abc")


def test_sdp_first_audio_stream() -> None:
    sdp = parse_sdp_audio(parse_message(COMPACT_INVITE).body)
    assert sdp is not None
    assert (sdp.host, sdp.port, sdp.direction, sdp.payload_types) == ("192.0.2.8", 40000, "sendonly", ("0", "101"))
    assert parse_sdp_audio("v=0\r\nm=video 1 RTP/AVP 31\r\n") is None
    media_level = parse_sdp_audio("c=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP 0\r\nc=IN IP4 2.2.2.2\r\n")
    assert media_level is not None and media_level.host == "2.2.2.2"


def test_name_addr_forms() -> None:
    assert parse_name_addr("sip:a@b;tag=1").tag == "1"  # without <>, params belong to the header
    assert parse_name_addr("<sip:a@b;lr>;tag=2").uri == "sip:a@b;lr"
    quoted = parse_name_addr(r'"J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert quoted.display == 'J Rosenberg \\"' and quoted.tag == "98asjd8"
    assert split_list('"a, b" <sip:x@y>, <sip:z@w;x=",">') == ['"a, b" <sip:x@y>', '<sip:z@w;x=",">']


def test_trusted_networks() -> None:
    nets = parse_networks(["10.0.0.5", "192.168.10.0/24", " "])
    assert address_in("10.0.0.5:5060", nets) and address_in("192.168.10.77:5080", nets)
    assert not address_in("10.0.0.6:5060", nets) and not address_in("garbage", nets)
    assert host_of("[::1]:5060") == "::1" and host_of("1.2.3.4") == "1.2.3.4"
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["trunk.example.net"])


def test_accept_header() -> None:
    assert accepts_sdp("") and accepts_sdp("application/sdp;level=1, text/plain") and accepts_sdp("*/*")
    assert not accepts_sdp("text/nobodyKnowsThis")


@pytest.mark.parametrize("name", sorted(p.name for p in TORTURE.glob("*.dat")))
def test_every_torture_message_parses_without_raising(name: str) -> None:
    msg = parse_message((TORTURE / name).read_bytes())
    assert msg.start_line
    parse_name_addr(msg.get("from"))
    parse_sdp_audio(msg.body)


def test_torture_compact_and_long_headers() -> None:
    msg = parse_message((TORTURE / "longreq.dat").read_bytes())
    assert msg.get("call-id").startswith("longreq.one")
    assert len(msg.get_all("via")) >= 30
    wsinv = parse_message((TORTURE / "wsinv.dat").read_bytes())
    assert parse_name_addr(wsinv.get("to")).tag == "1918181833n"
