"""`warden tools` and `warden tools show` report the autonomy the gate would apply now — the
policy plus run-time changes stored in the configured database — and the pauses that hold a
call; with no readable database they fall back to the policy's stages and say so."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from bot.policy import Policy
from handlers.cli import main
from storage.db import normalise_url
from storage.models import AutonomySetting
from tests.conftest import ADMIN, RecordingChat, policy_data
from tests.harness import warden
from tests.test_policy import _toml

WEB = '{"service": "web"}'
HELLO = '{"channel": "C0GENERAL", "text": "hello"}'


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def policy_file(tmp_path: Path) -> Path:
    """The same policy the `policy` fixture parses, as the file the CLI reads."""
    path = tmp_path / "warden.toml"
    path.write_text(_toml(policy_data(tmp_path)))
    return path


def as_admin(database_url: str, policy: Policy, *commands: tuple[str, str]) -> None:
    """Run admin commands the way Slack's `/warden autonomy` and `/pause` do (`Control`)."""
    with warden(database_url, policy, RecordingChat()) as w:
        control = w.lifecycle.control
        for command, text in commands:
            if command == "autonomy":
                tool, stage = text.split()
                reply = control.set_autonomy(tool, stage, ADMIN)
            else:
                reply = control.pause(ADMIN, text)
            assert reply.ok, reply.text
        assert w.workers.wait_idle(30)


def table(out: str) -> dict[str, list[str]]:
    """The listing's rows by tool name, as columns split on runs of two or more spaces."""
    lines = out.split("\n\n", 1)[0].splitlines()
    header = lines[0]
    starts = [header.index(c) for c in ("TOOL", "SOURCE", "TIER", "AUTONOMY", "UNDO")]
    return {
        line[: starts[1]].strip(): [line[a:b].strip() for a, b in itertools.pairwise(starts)]
        for line in lines[1:]
    }


def stored_setting(database_url: str, policy: Policy, tool: str) -> AutonomySetting:
    with warden(database_url, policy, RecordingChat()) as w:
        setting = w.store.autonomy_setting(tool)
    assert setting is not None
    return setting


def test_the_listing_shows_a_run_time_change_over_the_policy(
    database_url: str,
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["tools", "--config", str(path)]) == 0
    before = capsys.readouterr().out
    assert table(before)["restart_service"][3] == "approve"
    assert "(0 tools changed)" in before and "not shown" not in before

    # One change away from the policy, one that agrees with it (it still holds over it).
    as_admin(
        database_url,
        policy,
        ("autonomy", "restart_service suggest"),
        ("autonomy", "post_message auto"),
    )
    setting = stored_setting(database_url, policy, "restart_service")
    when = f"{setting.changed_at:%Y-%m-%d %H:%M} UTC"

    assert main(["tools", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    rows = table(out)
    assert rows["restart_service"][3] == "suggest*"
    assert rows["post_message"][3] == "auto*"
    assert rows["flush_cache"][3] == "approve"  # untouched: the policy's
    assert rows["lookup_user"][3] == "read-only"
    assert (
        f"  restart_service: suggest — set at run time by {ADMIN} at {when}, "
        "over the policy's approve\n"
    ) in out
    assert f"  post_message: auto — set at run time by {ADMIN} at " in out
    assert "the same as the policy's" in out.split("post_message: auto", 1)[1].splitlines()[0]
    assert "autonomy as the gate applies it now" in out and "(2 tools changed)" in out

    assert main(["tools", "--json", "--config", str(path)]) == 0
    tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert tools["restart_service"]["autonomy"] == "suggest"
    assert tools["restart_service"]["run_time"] == {
        "autonomy": "suggest",
        "policy": "approve",
        "changed_by": ADMIN,
        "changed_at": tools["restart_service"]["run_time"]["changed_at"],
    }
    assert tools["restart_service"]["run_time"]["changed_at"].startswith(
        setting.changed_at.strftime("%Y-%m-%dT%H:%M")
    )
    assert "run_time" not in tools["flush_cache"]
    assert tools["flush_cache"]["autonomy"] == "approve"


def test_show_uses_the_run_time_stage_and_names_the_pauses_that_hold_the_call(
    database_url: str,
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    as_admin(
        database_url,
        policy,
        ("autonomy", "flush_cache suggest"),
        ("pause", "2h tool:post_message announcements on hold"),
        ("pause", "tier:high change review"),
        ("pause", "channel:C0ELSEWHERE not this channel"),
    )

    # post_message is low risk and `auto` by policy: it would run at once, but its tool
    # scope holds it, so the gate (reading the run-time state) asks for a click.
    assert main(["tools", "show", "post_message", "--args", HELLO, "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "autonomy: auto (the policy's; no run-time change)\n" in out
    assert f"paused: the tool `post_message` by {ADMIN} until " in out
    assert ": announcements on hold\n" in out
    assert "high-risk actions and above" not in out  # low risk: the tier scope does not hold it
    assert "C0ELSEWHERE" not in out  # asked in C0GENERAL: that channel's scope does not hold it
    assert "gate: would wait for 1 approval(s): Paused for this tool" in out
    card = out.split("card:\n", 1)[1]
    assert "post_message — awaiting approval" in card
    assert "│ Paused for this tool by <@U0ADMIN> until " in card

    # restart_service is high risk: the tier scope holds it, the tool scope does not.
    argv = ["tools", "show", "restart_service", "--args", WEB, "--config", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    paused = [line for line in out.splitlines() if line.startswith("paused:")]
    assert paused == [f"paused: high-risk actions and above by {ADMIN}: change review"]
    assert "│ Paused for high-risk actions and above by <@U0ADMIN>: change review." in out

    # Asked in the paused channel, its scope holds the call too.
    assert main([*argv, "--channel", "C0ELSEWHERE"]) == 0
    paused = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("paused:")]
    assert paused == [
        f"paused: high-risk actions and above by {ADMIN}: change review",
        f"paused: actions asked in <#C0ELSEWHERE> by {ADMIN}: not this channel",
    ]

    # flush_cache's stage was changed at run time: the gate applies it, and show says who.
    argv = ["tools", "show", "flush_cache", "--args", '{"name": "pages"}', "--config", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"autonomy: suggest — set at run time by {ADMIN} at " in out
    assert "over the policy's approve\n" in out
    assert "gate: would post it as a suggestion" in out
    assert "paused: no pause holds this call\n" in out
    assert "flush_cache — suggested" in out


def test_show_names_the_global_pause(
    database_url: str,
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    as_admin(database_url, policy, ("pause", "drill"))
    assert main(["tools", "show", "post_message", "--args", HELLO, "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"paused: everything (Warden is paused) by {ADMIN}: drill\n" in out
    assert "gate: would wait for 1 approval(s): Warden is paused" in out
    assert "│ Warden is paused: nothing runs until /resume." in out


def _tables(url: str) -> set[str]:
    engine = create_engine(normalise_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _fallback(
    argv: list[str], capsys: pytest.CaptureFixture[str], expected: int = 0
) -> tuple[str, list[str]]:
    assert main(argv) == expected
    out = capsys.readouterr().out
    notes = [ln for ln in out.splitlines() if "run-time changes and pauses not shown" in ln]
    return out, notes


def test_a_database_without_a_schema_falls_back_to_the_policy_and_creates_nothing(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    sqlite_file = Path(tmp_path / "warden.db")
    existed = sqlite_file.exists()

    out, notes = _fallback(["tools", "--config", str(path)], capsys)
    assert table(out)["restart_service"][3] == "approve"
    assert table(out)["post_message"][3] == "auto"
    assert len(notes) == 1 and "autonomy as the policy sets it" in notes[0]
    sqlite = fresh_database_url.startswith("sqlite")
    assert ("there is no database at" if sqlite else "has no Warden schema yet") in notes[0]

    out, notes = _fallback(
        ["tools", "show", "restart_service", "--args", WEB, "--config", str(path)], capsys
    )
    assert len(notes) == 1 and "autonomy: approve\n" in out and "paused:" not in out

    if sqlite:
        assert sqlite_file.exists() == existed  # no file made where there was none
    else:
        assert _tables(fresh_database_url) == set()  # no schema made


def test_an_unreachable_database_falls_back_to_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_file(tmp_path)
    # Port 1 on this host: nothing listens there, so the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql://warden:secret@127.0.0.1:1/warden")
    out, notes = _fallback(["tools", "--config", str(path)], capsys)
    assert len(notes) == 1 and "cannot reach postgresql://warden:***@127.0.0.1:1/warden" in out
    assert "secret" not in out
    assert table(out)["restart_service"][3] == "approve"
    assert main(["tools", "--json", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert {t["name"]: t["autonomy"] for t in json.loads(captured.out)}["post_message"] == "auto"
    assert "run-time changes and pauses not shown" in captured.err  # stdout stays JSON
