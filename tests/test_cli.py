from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from voiceivr import __version__
from voiceivr.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("VOICEIVR_") and not key.startswith("VOICEIVR_TEST_"):
            monkeypatch.delenv(key)
    return CliRunner()


def test_help_and_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for group in ("config", "db", "audit"):
        assert group in result.output
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_config_show_names_sources_and_masks_secrets(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "voiceivr.toml").write_text("[log]\nlevel = 'WARNING'\n")
    result = runner.invoke(
        cli, ["config", "show"], env={"VOICEIVR_DATABASE_URL": "postgresql+psycopg://u:s3cret@h/db"}
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    lines = {line.split("=")[0].strip(): line for line in result.output.splitlines() if "=" in line}
    assert "(VOICEIVR_DATABASE_URL)" in lines["database.url"]
    assert "u:***@h/db" in lines["database.url"]
    assert "(voiceivr.toml)" in lines["log.level"]
    assert "(default)" in lines["log.json"]


def test_db_upgrade_then_audit_verify_on_default_sqlite(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "voiceivr.sqlite3").exists()
    result = runner.invoke(cli, ["db", "current"])
    assert "up to date" in result.output
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0
    assert "intact: 0 rows" in result.output


def _one_clear_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    err_lines = [line for line in result.output.splitlines() if line.startswith("voiceivr: error:")]
    assert len(err_lines) == 1, result.output
    return err_lines[0]


def test_malformed_database_url(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "upgrade"], env={"VOICEIVR_DATABASE_URL": "not a url"})
    assert "not a valid SQLAlchemy URL" in _one_clear_error(result)
    assert "hint:" in result.output


def test_unsupported_backend(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "upgrade"], env={"VOICEIVR_DATABASE_URL": "mysql://u@h/db"})
    assert "not supported" in _one_clear_error(result)


def test_database_down(runner: CliRunner) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    url = "postgresql+psycopg://app:pw@127.0.0.1:1/voiceivr"
    result = runner.invoke(cli, ["audit", "verify"], env={"VOICEIVR_DATABASE_URL": url})
    line = _one_clear_error(result)
    assert "cannot use database" in line
    assert "pw" not in result.output
    assert "is PostgreSQL running" in result.output


def test_database_not_migrated(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["audit", "verify"])
    assert "has no voiceivr schema" in _one_clear_error(result)
    assert "voiceivr db upgrade" in result.output


def test_database_behind_the_code(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["db", "upgrade", "0001"]).exit_code == 0
    result = runner.invoke(cli, ["audit", "tail"])
    assert "schema is at revision 0001" in _one_clear_error(result)


def test_downgrade_to_unknown_revision(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(cli, ["db", "downgrade", "nonsense"])
    assert "cannot downgrade to 'nonsense'" in _one_clear_error(result)


def test_bad_config_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "voiceivr.toml").write_text("[database\n")
    result = runner.invoke(cli, ["config", "show"])
    assert "not valid TOML" in _one_clear_error(result)
    assert result.exit_code == 2


def test_config_show_masks_a_password_given_in_the_url_query(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "show"],
                           env={"VOICEIVR_DATABASE_URL": "postgresql+psycopg://u@h/db?sslmode=disable&password=s3cret"})
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "postgresql+psycopg://u@h/db?sslmode=disable&password=***" in result.output


def test_an_error_carrying_the_url_masks_a_query_password(runner: CliRunner) -> None:
    # Nothing listens on port 1. In upper case libpq refuses the option itself (it was a traceback).
    for url in ("postgresql+psycopg://app@127.0.0.1:1/voiceivr?sslmode=disable&password=s3cret",
                "postgresql+psycopg://app@127.0.0.1:1/voiceivr?PASSWORD=s3cret"):
        for args in (["audit", "verify"], ["db", "upgrade"]):
            result = runner.invoke(cli, args, env={"VOICEIVR_DATABASE_URL": url})
            assert "cannot use database" in _one_clear_error(result)
            assert "s3cret" not in result.output and "password=***" in result.output.lower()


def test_config_show_docs_gives_each_range_and_a_bad_value_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["config", "show", "--docs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("policy.code_digits "))
    assert "# valid: 6 to 10" in lines[at + 2]
    result = runner.invoke(cli, ["config", "show"], env={"VOICEIVR_POLICY_TOTP_VALID_WINDOW": "240"})
    assert "policy.totp_valid_window = 240 is out of range: it must be 0 to 2" in _one_clear_error(result)
    assert result.exit_code == 2


@pytest.mark.parametrize(("args", "words"), [
    (["call", "sip:ivr@127.0.0.1:9", "--duration", "nan"], "Invalid value for '--duration': 'nan' is not a number"),
    (["call", "sip:ivr@127.0.0.1:9", "--pause", "-1"], "Invalid value for '--pause': '-1' is not a number from 0"),
    (["call", "sip:ivr@127.0.0.1:9", "--wait-prompt", "inf"], "Invalid value for '--wait-prompt': 'inf'"),
    (["replay", "x.wav", "--echo", "nan"], "Invalid value for '--echo': 'nan' is not a number from -90 to 20 dB"),
])
def test_numbers_click_lets_through_are_usage_errors(runner: CliRunner, args: list[str], words: str) -> None:
    # click's float type takes nan and inf: a call that listened "nan seconds", an echo at nan dB.
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and words in result.output, result.output
