from __future__ import annotations

from pathlib import Path

import pytest

from voiceivr.errors import ConfigError
from voiceivr.settings import load_settings, mask_secret, redact_urls


def _info(info: list, name: str):  # type: ignore[no-untyped-def]
    return next(i for i in info if i.name == name)


def test_defaults_and_their_source(tmp_path: Path) -> None:
    settings, info = load_settings(environ={}, config_file=tmp_path / "absent.toml")
    assert settings.database.url == ""
    assert settings.database_url() == "sqlite:///var/voiceivr.sqlite3"
    assert _info(info, "database.url").source == "default"
    assert all(i.doc for i in info), "every setting documents itself"


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "voiceivr.toml"
    cfg.write_text('[database]\nurl = "sqlite:///from-file.db"\nconnect_timeout_s = 3\n[log]\nlevel = "DEBUG"\n')
    settings, info = load_settings(environ={"VOICEIVR_LOG_LEVEL": "WARNING"}, config_file=cfg)
    assert settings.database.url == "sqlite:///from-file.db"
    assert settings.database.connect_timeout_s == 3.0
    assert settings.log.level == "WARNING"
    assert _info(info, "database.url").source == str(cfg)
    assert _info(info, "log.level").source == "VOICEIVR_LOG_LEVEL"
    assert _info(info, "log.json").source == "default"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[log]\njson = true\n")
    settings, _ = load_settings(environ={"VOICEIVR_CONFIG": str(cfg)})
    assert settings.log.json is True
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(environ={"VOICEIVR_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEIVR_LOG_JSON": "perhaps"}, "VOICEIVR_LOG_JSON: expected true or false"),
        ({"VOICEIVR_DATABASE_CONNECT_TIMEOUT_S": "soon"}, "expected a number"),
    ],
)
def test_bad_environment_values_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env, config_file=tmp_path / "absent.toml")


def test_unknown_keys_and_bad_toml_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "voiceivr.toml"
    cfg.write_text("[databse]\nurl = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[databse\]"):
        load_settings(environ={}, config_file=cfg)
    cfg.write_text("[database]\nulr = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown key database.ulr"):
        load_settings(environ={}, config_file=cfg)
    cfg.write_text("[database\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={}, config_file=cfg)


def test_secrets_are_masked() -> None:
    assert mask_secret("postgresql+psycopg://app:hunter2@db:5432/v") == "postgresql+psycopg://app:***@db:5432/v"
    assert mask_secret("postgresql+psycopg://app@db/v") == "postgresql+psycopg://app@db/v"
    assert mask_secret("AC123secret") == "***"


@pytest.mark.parametrize(("env", "message"), [
    # The safe path's own numbers: a 3-digit code guessed in 5,000 tries, a TOTP accepted for two hours.
    ({"VOICEIVR_POLICY_CODE_DIGITS": "3"}, "VOICEIVR_POLICY_CODE_DIGITS: policy.code_digits = 3 is out of range: "
                                           "it must be 6 to 10"),
    ({"VOICEIVR_POLICY_CODE_MAX_ATTEMPTS": "5000"}, "policy.code_max_attempts = 5000 is out of range: it must be "
                                                    "1 to 10"),
    ({"VOICEIVR_POLICY_TOTP_VALID_WINDOW": "240"}, "policy.totp_valid_window = 240 is out of range: it must be 0 to 2"),
    ({"VOICEIVR_POLICY_CODE_TTL_S": "86400"}, "policy.code_ttl_s = 86400 is out of range: it must be 30 to 600"),
    ({"VOICEIVR_POLICY_CONFIRM_MIN_CONFIDENCE": "0.01"}, "policy.confirm_min_confidence = 0.01 is out of range"),
    ({"VOICEIVR_POLICY_HIGH_AMOUNT_CENTS": "0"}, "policy.high_amount_cents = 0 is out of range"),
    ({"VOICEIVR_VAD_THRESHOLD": "nan"}, "VOICEIVR_VAD_THRESHOLD: expected a finite number, got 'nan'"),
    ({"VOICEIVR_CALL_IDLE_HANGUP_S": "inf"}, "VOICEIVR_CALL_IDLE_HANGUP_S: expected a finite number, got 'inf'"),
    ({"VOICEIVR_SIP_CALLS_PER_WORKER": "9"}, "sip.calls_per_worker = 9 is out of range: it must be 1 to 4"),
    ({"VOICEIVR_SIP_MEDIA_RATE": "44100"}, "sip.media_rate = 44100 is out of range: it must be one of 8000, 16000"),
    ({"VOICEIVR_SIP_SRTP": "maybe"}, "sip.srtp = 'maybe' is out of range: it must be one of off, optional, mandatory"),
    ({"VOICEIVR_DIALPLAN_TIERS": "0,1,7"}, "dialplan.tiers = 7 is out of range: it must be 0 to 3"),
])
def test_out_of_range_values_are_refused_with_the_setting_and_its_source(
        tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env, config_file=tmp_path / "absent.toml")
    assert message in str(caught.value)
    if "out of range" in message:  # and the hint says what the setting is for
        assert caught.value.hint and caught.value.hint.startswith(message.split(" = ")[0].split(": ")[-1] + ": ")


def test_a_range_error_names_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "voiceivr.toml"
    cfg.write_text("[policy]\ncode_max_attempts = 5000\n")
    with pytest.raises(ConfigError, match=rf"^{cfg}: policy.code_max_attempts = 5000 is out of range"):
        load_settings(environ={}, config_file=cfg)


def test_choices_take_their_own_spelling(tmp_path: Path) -> None:
    settings, _ = load_settings(environ={"VOICEIVR_SIP_SRTP": " OFF ", "VOICEIVR_LOG_LEVEL": "debug",
                                         "VOICEIVR_CALL_BARGE_IN_HOLD": "VAD"}, config_file=tmp_path / "absent.toml")
    assert (settings.sip.srtp, settings.log.level, settings.call.barge_in_hold) == ("off", "DEBUG", "vad")


def test_every_number_has_a_range_and_every_default_is_in_it(tmp_path: Path) -> None:
    # A new numeric setting without min/max fails here: choose its range (and say why) where it is declared.
    _, info = load_settings(environ={}, config_file=tmp_path / "absent.toml")
    numeric = [i for i in info if (isinstance(i.value, int | float) and not isinstance(i.value, bool))
               or (isinstance(i.value, list) and i.value and isinstance(i.value[0], int))]
    assert numeric and [i.name for i in numeric if i.bounds is None] == []
    for i in info:
        if i.bounds is not None:
            assert i.bounds.check(i.value, i.name, "default", i.doc) == i.value


def test_url_passwords_are_masked_in_the_query_too() -> None:
    assert mask_secret("postgresql+psycopg://app@db/v?password=hunter2") == "postgresql+psycopg://app@db/v?password=***"
    assert (mask_secret("postgresql+psycopg://app:p@ss@db/v?sslmode=require&PassWord=hunter2&x=1")
            == "postgresql+psycopg://app:***@db/v?sslmode=require&PassWord=***&x=1")
    assert redact_urls("cannot use database postgresql://u@h/db?password=hunter2: refused") == (
        "cannot use database postgresql://u@h/db?password=***: refused")


def test_an_off_value_outside_the_range_turns_a_limit_off(tmp_path: Path) -> None:
    ok, _ = load_settings({"VOICEIVR_CALL_MAX_DURATION_S": "0"}, config_file=tmp_path / "none.toml")
    assert ok.call.max_duration_s == 0
    with pytest.raises(ConfigError) as err:
        load_settings({"VOICEIVR_CALL_NO_PROGRESS_HANGUP_S": "5"}, config_file=tmp_path / "none.toml")
    assert "call.no_progress_hangup_s = 5" in str(err.value) and "0 (off) or 30 to 86400" in str(err.value)
