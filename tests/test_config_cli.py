"""A bad environment value is a one-line configuration error (exit 2) for every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings
from handlers.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_POLICY = str(ROOT / "handlers" / "demo" / "warden.toml")

COMMANDS = [
    ["check", "--config", DEMO_POLICY],
    ["serve"],
    ["serve", "--socket-mode"],
    ["dev", "--no-browser"],
    ["dev", "--no-browser", "--port", "0"],
    ["audit", "verify"],
    ["db", "upgrade"],
    ["eval", "--config", DEMO_POLICY, "no-such-cases.toml"],
]


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in ("PORT", "DATABASE_URL", "SLACK_API_URL", "ANTHROPIC_BASE_URL", "WARDEN_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'never-created.db'}")


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "abc"), ("PORT", "70000"), ("SLACK_API_URL", "slack.example"), ("WARDEN_MODEL", "")],
)
def test_bad_environment_is_a_one_line_error(
    argv: list[str],
    variable: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("warden: configuration error: bad environment: ")
    assert f"{variable}=" in lines[0]
    assert not (tmp_path / "never-created.db").exists()  # nothing started


def test_bad_database_url_names_it_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres-ish://warden:hunter2@db/warden")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL=" in err and "not a database URL" in err
    assert "hunter2" not in err


def test_secret_values_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SLACK_BOT_TOKEN=12345, ANTHROPIC_API_KEY=["sk-ant-x"])
    message = str(info.value)
    assert "SLACK_BOT_TOKEN: " in message and "ANTHROPIC_API_KEY: " in message
    assert "12345" not in message and "sk-ant-x" not in message
    assert "\n" not in message


def test_port_from_the_environment_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    assert load_settings().port == 8123
