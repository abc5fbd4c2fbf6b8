"""Runbooks: argv only, validated parameters, timeouts, bounded output."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ToolArgumentsError
from bot.policy import Runbook
from bot.runbooks import OUTPUT_KEEP, runbook_tool
from bot.tools import ToolContext

CTX = ToolContext(action_id="act123", trace_id="tr", requester="U0REQ")


def tool(**kw: object) -> object:
    return runbook_tool("rb", Runbook.model_validate({"description": "d", **kw}))


def test_parameters_are_single_argv_elements_never_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["printf", "%s|", "{a}", "x{a}y"],
                "params": {"a": {"pattern": ".+"}},
            }
        ),
    )
    payload = f"$(touch {marker});`touch {marker}`&&touch {marker}"[:200]
    result = t.run(t.validate({"a": payload}), CTX)
    assert result.ok
    assert result.output == f"{payload}|x{payload}y|"
    assert not marker.exists()


def test_validation_before_substitution() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["echo", "{svc}", "{env}"],
                "params": {"svc": {"pattern": "^[a-z]+$"}, "env": {"choices": ["a", "b"]}},
            }
        ),
    )
    for bad in (
        {"svc": "ABC", "env": "a"},
        {"svc": "abc", "env": "c"},
        {"svc": "--help", "env": "a"},
        {"svc": "abc"},
        {"svc": "a\nb", "env": "a"},
        {"svc": "abc", "env": "a", "more": "x"},
    ):
        with pytest.raises(ToolArgumentsError):
            t.validate(bad)
    assert t.run(t.validate({"svc": "abc", "env": "b"}), CTX).output.strip() == "abc b"


def test_idempotency_key_reaches_the_command() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {"description": "d", "command": ["sh", "-c", "echo $WARDEN_ACTION_ID"]}
        ),
    )
    assert t.run(t.validate({}), CTX).output.strip() == "act123"


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    import os

    pidfile = tmp_path / "child.pid"
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "timeout": "500ms",
                "command": ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"],
            }
        ),
    )
    result = t.run(t.validate({}), CTX)
    assert not result.ok and "timed out" in result.output
    child = int(pidfile.read_text())
    # The background grandchild was in the killed process group: it is gone (or a zombie
    # about to be reaped by init), not sleeping on.
    try:
        os.kill(child, 0)
        state = Path(f"/proc/{child}/stat").read_text().split()[2]
        assert state == "Z"
    except (ProcessLookupError, FileNotFoundError):
        pass


def test_failure_and_missing_binary() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate({"description": "d", "command": ["sh", "-c", "echo no; exit 3"]}),
    )
    result = t.run(t.validate({}), CTX)
    assert not result.ok and result.output.startswith("exit status 3")
    t2 = runbook_tool(
        "rb", Runbook.model_validate({"description": "d", "command": ["/no/such/binary"]})
    )
    assert "could not start" in t2.run(t2.validate({}), CTX).output


def test_huge_output_is_bounded() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["sh", "-c", "echo START; yes line | head -c 5000000; echo; echo END"],
            }
        ),
    )
    result = t.run(t.validate({}), CTX)
    assert (
        result.ok and result.output.startswith("START") and result.output.rstrip().endswith("END")
    )
    assert len(result.output) < 2 * OUTPUT_KEEP + 200
