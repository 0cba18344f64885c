"""Admission rules as logic (voiceivr/telephony/admission.py), the Kamailio route generated for them, and the
merged /metrics family. Over real SIP: tests/sip/test_sip_admission.py."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from voiceivr import metrics
from voiceivr.errors import ConfigError
from voiceivr.settings import SipSettings
from voiceivr.telephony import kamailio
from voiceivr.telephony.admission import Admission
from voiceivr.telephony.serve_metrics import ServeCollector


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sip(**kw: object) -> SipSettings:
    return dataclasses.replace(SipSettings(), **kw)  # type: ignore[arg-type]


def refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("voiceivr_sip_refused_total", {"reason": reason}) or 0.0


def test_allow_list_trusted_proxies_and_limits() -> None:
    before = {r: refused(r) for r in ("forbidden_source", "source_calls", "source_rate")}
    clock = Clock(1020.0)
    adm = Admission(sip(allowed_sources=["192.0.2.0/24"], trusted_proxies=["198.51.100.7"], source_max_calls=2,
                        source_max_invites=3, source_invite_window_s=60), clock=clock)
    busy = {"192.0.2.1": 2, "198.51.100.7": 50}
    calls = lambda host: busy.get(host, 0)  # noqa: E731

    assert adm.check("203.0.113.9:5060", calls).status == 403  # type: ignore[union-attr]
    assert adm.check("198.51.100.7:5060", calls) is None  # the trunk: allowed, and never limited
    assert adm.check("192.0.2.1:5060", calls).status == 486  # type: ignore[union-attr]
    assert adm.check("192.0.2.2:5060", calls) is None
    assert adm.check("192.0.2.2:5062", calls) is None
    assert adm.check("192.0.2.2:5064", calls) is None
    rate = adm.check("192.0.2.2:5066", calls)  # the 4th INVITE of the window (1020-1080 s)
    assert rate is not None and rate.status == 503 and rate.header() == ("Retry-After", "60")
    clock.t = 1079.5
    assert adm.check("192.0.2.2:5060", calls).header() == ("Retry-After", "1")  # type: ignore[union-attr]
    clock.t = 1080.0  # a new window
    assert adm.check("192.0.2.2:5060", calls) is None
    after = {r: refused(r) for r in before}
    assert after == {"forbidden_source": before["forbidden_source"] + 1, "source_calls": before["source_calls"] + 1,
                     "source_rate": before["source_rate"] + 2}


def test_behind_kamailio_a_worker_checks_only_the_allow_list() -> None:
    adm = Admission(sip(allowed_sources=["127.0.0.1"], source_max_calls=1, source_max_invites=1), count_limits=False)
    assert adm.check("127.0.0.1:5060", lambda host: 9) is None
    assert adm.check("127.0.0.1:5060", lambda host: 9) is None
    assert adm.check("127.0.0.2:5060", lambda host: 0).status == 403  # type: ignore[union-attr]


@pytest.mark.parametrize("kw, message", [
    ({"allowed_sources": ["10.0.0.0/33"]}, "sip.allowed_sources: not an IP address or network: '10.0.0.0/33'"),
    ({"source_max_calls": -1}, "sip.source_max_calls = -1: must be 0 (no limit) or more"),
    ({"source_invite_window_s": 0}, "sip.source_invite_window_s = 0: must be 1-3600"),
])
def test_bad_admission_settings_are_one_clear_error(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Admission(sip(**kw))
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("kw, message", [
    ({"auth_user": "pbx", "auth_password": ""}, "sip.auth_user is set but sip.auth_password is empty"),
    ({"auth_user": 'a"b', "auth_password": "x"}, "sip.auth_user = 'a\"b': use 1-64 letters"),
    ({"auth_user": "pbx", "auth_password": "x", "auth_realm": "a b"}, "sip.auth_realm = 'a b': use 1-64"),
])
def test_bad_digest_settings_are_one_clear_error(kw: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        kamailio.check_auth(sip(**kw))
    assert str(err.value).startswith(message)


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="Kamailio is not installed (scripts/test installs it)")
@pytest.mark.parametrize("kw", [
    {},
    {"source_max_calls": 0, "source_max_invites": 0},
    {"allowed_sources": ["10.0.0.0/8", "2001:db8::/32"], "trusted_proxies": ["192.0.2.10"], "auth_user": "pbx",
     "auth_password": "pw", "source_max_calls": 3, "source_max_invites": 10},
])
def test_generated_admission_route_is_valid_kamailio(kw: dict[str, object], tmp_path: Path) -> None:
    files = kamailio.write_config(tmp_path / "k", sip(**kw), "127.0.0.1", 5060,
                                  [kamailio.Worker("127.0.0.1", 5070)], max_call_s=1800)
    kamailio.check_config(shutil.which("kamailio") or "kamailio", files)
    text = files.config.read_text()
    assert 'modparam("dialog", "default_timeout", 1860)' in text and 'modparam("dialog", "send_bye", 1)' in text
    if kw.get("trusted_proxies"):
        # The trunk returns before any check that could refuse it.
        route = text[text.index("route[ADMIT]"):]
        assert route.index('is_in_subnet("$si", "192.0.2.10/32")') < route.index("pv_proxy_authenticate")
        assert "pw" not in route.split("pv_proxy_authenticate")[1].split("\n")[0]


def test_kamailio_refusals_merge_into_the_workers_family() -> None:
    registry = CollectorRegistry()
    worker = Counter("voiceivr_sip_refused", "x", ["reason"], registry=registry)
    worker.labels("forbidden_source").inc(2)
    readings: list[dict[str, int] | None] = [{"forbidden_source": 3, "source_rate": 1}, None, {"source_rate": 0}]
    collector = ServeCollector(registry, lambda: readings.pop(0))

    def totals() -> dict[str, float]:
        (family,) = [f for f in collector.collect() if f.name == "voiceivr_sip_refused"]
        return {s.labels["reason"]: s.value for s in family.samples}

    assert totals() == {"forbidden_source": 5.0, "source_rate": 1.0}
    assert totals() == {"forbidden_source": 5.0, "source_rate": 1.0}  # Kamailio not answering: last figures
    assert totals()["source_rate"] == 1.0  # Kamailio restarted at 0: the count does not go backwards
