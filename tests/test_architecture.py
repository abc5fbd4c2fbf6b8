"""The shape of the code: imports go handlers → bot → storage, Slack's wire format stays in
handlers/, only one module calls tool code, and the lifecycle's graph is the one enforced."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def test_bot_never_imports_slack_libraries() -> None:
    offenders = {
        f: sorted(n for n in names if n.split(".")[0] in {"slack_sdk", "slack_bolt"})
        for f, names in _imports("bot").items()
    }
    assert {f: n for f, n in offenders.items() if n} == {}


def test_bot_builds_no_block_kit() -> None:
    block_kit = re.compile(
        r"""["'](?:type)["']\s*:\s*["'](?:section|actions|context|header|divider|button|modal|home|mrkdwn|plain_text|input)["']"""
    )
    hits = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "bot").rglob("*.py")
        if block_kit.search(p.read_text())
    ]
    assert hits == []


def test_storage_never_imports_bot_or_handlers() -> None:
    offenders = {
        f: sorted(n for n in names if n.split(".")[0] in {"bot", "handlers"})
        for f, names in _imports("storage").items()
    }
    assert {f: n for f, n in offenders.items() if n} == {}


def test_bot_never_imports_handlers() -> None:
    offenders = {
        f: sorted(n for n in names if n.split(".")[0] == "handlers")
        for f, names in _imports("bot").items()
    }
    assert {f: n for f, n in offenders.items() if n} == {}


def test_only_the_executor_calls_tool_code() -> None:
    """Tool functions (run, undo, dry_run) are called only in bot/execution.py."""
    call = re.compile(r"\b(?:tool|t)\.(?:run|undo|dry_run)\(")
    hits = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "bot").rglob("*.py")
        if p.name != "execution.py" and call.search(p.read_text())
    ]
    assert hits == []


def test_only_the_gate_reads_approver_lists() -> None:
    """Who may approve is asked of the gate: nothing else in bot/ reads the policy's lists."""
    hits = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "bot").rglob("*.py")
        if p.name not in {"gate.py", "policy.py"} and "approvers_for(" in p.read_text()
    ]
    assert hits == []
