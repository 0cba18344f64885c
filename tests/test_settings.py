from __future__ import annotations

from pathlib import Path

import pytest

from voiceivr.errors import ConfigError
from voiceivr.settings import load_settings, mask_secret


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
