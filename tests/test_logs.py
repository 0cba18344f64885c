from __future__ import annotations

import json
import logging

import pytest

from voiceivr import logs


def _emit(capsys: pytest.CaptureFixture[str], as_json: bool, msg: str, **extra: object) -> str:
    logs.configure("DEBUG", as_json)
    logging.getLogger("voiceivr.test").info(msg, extra=extra)
    return capsys.readouterr().err


def test_key_value_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    out = _emit(capsys, False, "call answered", call_id="c-1", stage="intent")
    assert "call answered" in out and "call_id=c-1" in out and "stage=intent" in out


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    obj = json.loads(_emit(capsys, True, "budget breached", call_id="c-2", ms=512).strip())
    assert obj["msg"] == "budget breached" and obj["call_id"] == "c-2" and obj["ms"] == 512


def test_digits_and_sensitive_fields_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    out = _emit(capsys, True, "caller keyed 4815 1623 then 12", transcript="my pin is 4815", pin="4815")
    assert "4815" not in out and "1623" not in out
    obj = json.loads(out)
    assert obj["transcript"] == "[redacted]" and obj["pin"] == "[redacted]"
    assert obj["msg"].endswith("then 12")  # short numbers (a menu choice) are fine


@pytest.mark.parametrize("as_json", [False, True])
def test_url_passwords_are_masked_in_messages_arguments_and_fields(capsys: pytest.CaptureFixture[str],
                                                                   as_json: bool) -> None:
    logs.configure("DEBUG", as_json)
    log = logging.getLogger("voiceivr.test")
    log.warning("database postgresql://app:s3cret@db/v unreachable")
    log.warning("database %s unreachable", "postgresql://app@db/v?password=s3cret")
    log.warning("database unreachable", extra={"url": "postgresql://app@db/v?sslmode=require&Password=s3cret"})
    out = capsys.readouterr().err
    assert out.count("***") == 3 and "s3cret" not in out, out
