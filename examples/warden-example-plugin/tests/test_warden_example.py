"""The example plugin's own tests: its contract passes Warden's loader, and each tool does
its job once per action (run, retry, undo, dry run), with nothing but a temporary file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from warden_example import REGISTRY
from warden_example.tools import PAGER_FILE, TEAMS

from bot.plugins import check_tool, discover
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext


def ctx(action_id: str = "a1") -> ToolContext:
    return ToolContext(action_id=action_id, trace_id="t1", requester="U0REQ", channel="C0GEN")


def tool(name: str) -> Tool[Any]:
    return REGISTRY.get(name)


def pages(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def pager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "pages.jsonl"
    monkeypatch.setenv(PAGER_FILE, str(path))
    monkeypatch.delenv(TEAMS, raising=False)
    return path


def test_warden_finds_it_through_its_entry_point() -> None:
    found = [p for p in discover() if p.value == "warden_example:REGISTRY"]
    assert len(found) == 1, "install it: pip install -e examples/warden-example-plugin"
    assert found[0].source == "plugin warden-example-plugin"


def test_every_tool_passes_wardens_contract_check() -> None:
    assert REGISTRY.names() == ["page_oncall", "roll_dice"]
    for t in REGISTRY:
        assert check_tool(t, "example") is t


def test_roll_dice_is_read_only_and_the_same_call_rolls_the_same() -> None:
    dice = tool("roll_dice")
    assert dice.read_only and dice.undo is None and dice.dry_run is None
    args = dice.validate({"dice": 3, "sides": 6})
    first = json.loads(dice.run(args, ctx("call-1")).output)
    assert json.loads(dice.run(args, ctx("call-1")).output) == first
    assert len(first["rolls"]) == 3 and all(1 <= r <= 6 for r in first["rolls"])
    assert first["total"] == sum(first["rolls"])
    rolls = {tuple(json.loads(dice.run(args, ctx(f"call-{i}")).output)["rolls"]) for i in range(20)}
    assert len(rolls) > 1  # not one fixed answer


def test_page_arguments_are_strict_and_urgency_raises_the_tier() -> None:
    page = tool("page_oncall")
    with pytest.raises(Exception, match="team"):
        page.validate({"team": "Payments Team", "message": "x"})
    with pytest.raises(Exception, match="Extra inputs"):
        page.validate({"team": "payments", "message": "x", "cc": "everyone"})
    calm = page.validate({"team": "payments", "message": "x"})
    loud = page.validate({"team": "payments", "message": "x", "urgent": True})
    assert page.risk_for(calm) is Risk.LOW and page.risk_for(loud) is Risk.MEDIUM


def test_the_precondition_keeps_pages_to_known_teams(monkeypatch: pytest.MonkeyPatch) -> None:
    page = tool("page_oncall")
    args = page.validate({"team": "marketing", "message": "x"})
    monkeypatch.delenv(TEAMS, raising=False)
    assert page.failed_precondition(args) is None
    monkeypatch.setenv(TEAMS, "payments, platform")
    assert "no on-call rota" in str(page.failed_precondition(args))
    assert page.failed_precondition(page.validate({"team": "platform", "message": "x"})) is None


def test_page_runs_once_per_action_and_undo_cancels_it(pager: Path) -> None:
    page = tool("page_oncall")
    args = page.validate({"team": "payments", "message": "checkout is down"})
    sent = page.run(args, ctx("act-1"))
    assert sent.ok and sent.note == "paged the payments on-call"
    assert sent.undo_data == {"page": "act-1"}
    again = page.run(args, ctx("act-1"))  # a retry of the same action
    assert again.ok and "already paged" in again.note
    assert [(p["event"], p["page"]) for p in pages(pager)] == [("sent", "act-1")]
    assert pages(pager)[0]["message"] == "checkout is down"
    assert page.undo is not None
    assert page.undo(args, ctx("act-1"), sent.undo_data).ok
    assert page.undo(args, ctx("act-1"), sent.undo_data).ok  # undoing twice is harmless
    assert [p["event"] for p in pages(pager)] == ["sent", "cancelled"]
    assert not page.undo(args, ctx("act-2"), {"page": "act-2"}).ok  # never sent


def test_the_dry_run_says_what_would_happen_and_does_nothing(pager: Path) -> None:
    page = tool("page_oncall")
    assert page.dry_run is not None
    text = page.dry_run(page.validate({"team": "payments", "message": "hi", "urgent": True}), ctx())
    assert "would page the payments on-call (urgent): hi" in text and str(pager) in text
    assert not pager.exists()


def test_without_a_pager_file_a_run_fails_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PAGER_FILE, raising=False)
    page = tool("page_oncall")
    args = page.validate({"team": "payments", "message": "x"})
    result = page.run(args, ctx())
    assert not result.ok and PAGER_FILE in result.output
    assert page.dry_run is not None and "a run would fail" in page.dry_run(args, ctx())
