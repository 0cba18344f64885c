"""The SIP edge's public face after its split by job (issue 16): what the test caller and the scripts use."""

from __future__ import annotations

import inspect
import threading

import pytest

from voiceivr.settings import SipSettings
from voiceivr.telephony.edge import EdgeConfig, SipEdge, SipEdgeError


def test_hangup_is_public_with_the_parameters_of_the_private_one() -> None:
    public = inspect.signature(SipEdge.hangup).parameters
    private = inspect.signature(SipEdge._hangup).parameters
    assert list(public) == list(private) == ["self", "key", "by", "reason"]


def test_hangup_of_an_unknown_call_does_nothing() -> None:
    SipEdge(EdgeConfig(sip=SipSettings()), None).hangup("no-such-call", "agent", "caller timeout")


def test_start_timeout_names_the_seconds() -> None:
    edge = SipEdge(EdgeConfig(sip=SipSettings()), None)
    edge._thread = threading.Thread(target=lambda: None)  # a SIP thread that never gets ready
    with pytest.raises(SipEdgeError, match=r"did not start within 1 s"):
        edge.start(timeout=0.6)
