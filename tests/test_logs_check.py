"""Structured logs (WARDEN_LOG_FORMAT) and `warden check`'s prompt-cache warning.

Logs: a real request through signed Slack requests and the stub Messages API, its lines
captured from Warden's own handler; redaction and one-line escaping in both formats;
library loggers through the same handler (a fresh process, configured as `warden` does it).
Check: the cached prefix counted by the stub's count-tokens endpoint or estimated.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.logcontext import bind, bound, ids, scoped
from handlers.cli import main
from handlers.logs import handler
from storage.models import ActionStatus
from tests.anthropic_stub import AnthropicStub, propose, reply
from tests.conftest import APPROVER
from tests.slack_fixtures import CHANNEL, SlackFactory

ROOT = Path(__file__).resolve().parents[1]
WORDS = "zebra-unicorn quietly"  # only the requester wrote these
SLACK_TOKEN = "xoxb-1234567890-abcdefghijklmnop"
API_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"

Capture = Callable[..., io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """`capture(fmt, level)`: Warden's handler on the root logger, writing to a buffer."""
    root = logging.getLogger()
    installed: list[logging.Handler] = []
    level = root.level

    def make(fmt: str = "json", at: int = logging.DEBUG) -> io.StringIO:
        out = io.StringIO()
        h = handler(fmt, out)
        h.setLevel(at)
        root.addHandler(h)
        installed.append(h)
        root.setLevel(min(root.level or logging.WARNING, at))
        return out

    yield make
    for h in installed:
        root.removeHandler(h)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# -- a real request, through signed Slack ----------------------------------------------------


def test_json_lines_carry_the_ids_of_a_real_request(
    slack_factory: SlackFactory, anthropic_stub: AnthropicStub, capture: Capture
) -> None:
    out = capture("json", logging.DEBUG)
    slack = slack_factory(claude=anthropic_stub)
    anthropic_stub.enqueue(
        reply(propose("restart_service", {"service": "checkout-api"}, 0.95, "Asked to."))
    )
    action, card = slack.mention_and_card(f"please restart checkout-api {WORDS}")
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    action = slack.store.get_action(action.id)
    assert action.status == ActionStatus.SUCCEEDED
    owner = slack.bot.warden.lifecycle.owner

    records = lines(out)
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r)
        assert r["time"].endswith("Z")
        assert datetime.fromisoformat(r["time"]).utcoffset() is not None  # UTC, ISO 8601

    def about(logger: str, words: str) -> dict[str, Any]:
        found = [r for r in records if r["logger"] == logger and words in r["message"]]
        assert found, f"no {logger} line saying {words!r}"
        return found[0]

    request_ids = {"trace_id": action.trace_id, "request_id": action.request_id, "owner": owner}
    action_ids = {**request_ids, "action_id": action.id}
    accepted = about("bot.intake", "request accepted")
    assert {k: accepted.get(k) for k in request_ids} == request_ids
    assert "action_id" not in accepted  # not known yet
    planned = about("bot.planning", "request planned: 1 action")
    assert {k: planned.get(k) for k in request_ids} == request_ids
    for logger, words in (
        ("bot.planning", "awaiting_approval: restart_service"),
        ("bot.approvals", "approval recorded (1 of 1)"),
        ("bot.execution", "running restart_service"),
        ("bot.execution", "action succeeded: restart_service"),
        ("bot.delivery", "delivered"),
    ):
        line = about(logger, words)
        assert {k: line.get(k) for k in action_ids} == action_ids, line
    # No line carries ids of anything else (nothing stale from an earlier block).
    assert all(
        r.get("action_id") in (None, action.id) and r.get("trace_id") in (None, action.trace_id)
        for r in records
    )
    # What the requester wrote is never logged at INFO or above.
    loud = [r for r in records if logging.getLevelName(r["level"]) >= logging.INFO]
    assert loud and not [r for r in loud if "zebra" in json.dumps(r)]
    assert [r for r in records if "zebra" in json.dumps(r)]  # (slack_sdk's DEBUG lines do)


def test_text_lines_of_a_real_request_append_the_ids(
    slack_factory: SlackFactory, capture: Capture
) -> None:
    out = capture("text", logging.INFO)
    slack = slack_factory()
    action, _card = slack.mention_and_card("restart checkout-api")
    text = out.getvalue()
    (accepted,) = [ln for ln in text.splitlines() if "bot.intake: request accepted" in ln]
    assert accepted.split(" ")[1] == "INFO"
    assert f" trace_id={action.trace_id} request_id={action.request_id} owner=" in accepted
    assert any(f"action_id={action.id}" in ln for ln in text.splitlines())


# -- redaction and escaping ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_redacted_in_messages_extras_and_exceptions(fmt: str, capture: Capture) -> None:
    out = capture(fmt, logging.INFO)
    log = logging.getLogger("bot.somewhere")
    log.warning("the token is %s", SLACK_TOKEN, extra={"detail": f"key {API_KEY}"})
    try:
        raise RuntimeError(f"call failed with {API_KEY}")
    except RuntimeError:
        log.exception("could not call with %s", SLACK_TOKEN)
    text = out.getvalue()
    assert SLACK_TOKEN not in text and API_KEY not in text
    assert "abcdefghijklmnop" not in text
    assert text.count("[redacted slack token]") == 2
    assert "[redacted api key]" in text and "RuntimeError" in text
    assert len(text.splitlines()) == 2  # a traceback stays on its record's line
    if fmt == "json":
        first, second = lines(out)
        assert first["detail"] == "key [redacted api key]"
        assert "call failed with [redacted api key]" in second["exc_info"]


def test_a_forged_newline_stays_on_one_line_in_text_mode(capture: Capture) -> None:
    out = capture("text", logging.INFO)
    forged = "restart web\nFAKE level=INFO trace_id=forged\r\x1b[2J\u2028evil\x85more"
    with bound(trace_id="t0123456789abcdef"):
        logging.getLogger("bot.intake").info("asked: %s", forged)
    (line,) = out.getvalue().splitlines()
    assert "\\nFAKE level=INFO trace_id=forged\\r" in line
    assert "\\u2028evil\\x85more" in line and "\x1b" not in line
    assert line.endswith(" trace_id=t0123456789abcdef")  # the real id comes last

    json_out = capture("json", logging.INFO)
    logging.getLogger("bot.intake").info("asked: %s", forged)
    (record,) = lines(json_out)  # JSON escaping keeps it on one line too
    assert record["message"].startswith("asked: restart web\nFAKE")


def test_library_loggers_go_through_wardens_handler() -> None:
    """In a fresh process configured as `warden` does it: Bolt's and slack_sdk's lines are
    Warden's JSON lines, redacted, with the ids bound where they were logged."""
    code = (
        "import logging\n"
        "from handlers.logs import configure\n"
        "from bot.logcontext import bound\n"
        "configure('json')\n"
        "with bound(trace_id='trace1', action_id='act1'):\n"
        f"    logging.getLogger('slack_bolt.App').warning('bolt saw {SLACK_TOKEN}')\n"
        f"    logging.getLogger('slack_sdk.web.base_client').error('sdk saw {API_KEY}')\n"
        "logging.getLogger('slack_sdk').debug('not at INFO')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    bolt, sdk = (json.loads(ln) for ln in done.stderr.splitlines())
    assert bolt["logger"] == "slack_bolt.App" and bolt["message"] == (
        "bolt saw [redacted slack token]"
    )
    assert sdk["logger"] == "slack_sdk.web.base_client" and "[redacted api key]" in sdk["message"]
    assert bolt["trace_id"] == sdk["trace_id"] == "trace1" and bolt["action_id"] == "act1"


def test_bind_only_lasts_until_its_scope_ends() -> None:
    @scoped
    def work() -> dict[str, str]:
        bind(request_id="r1")
        bind(trace_id="t1")
        return dict(ids())

    assert work() == {"request_id": "r1", "trace_id": "t1"}
    assert ids() == {}
    bind(action_id="a1")  # outside any scope: nothing to attach it to, nothing leaks
    assert ids() == {}
    with bound(owner="o1"):
        assert work() == {"owner": "o1", "request_id": "r1", "trace_id": "t1"}
        assert ids() == {"owner": "o1"}


# -- configuration --------------------------------------------------------------------------


def _policy(tmp_path: Path, instructions: str = "") -> Path:
    path = tmp_path / "warden.toml"
    text = '[access]\nadmins = ["U012ADMIN"]\napprovers = ["U034APPR"]\nadmin_channel = "C0OPS"\n'
    if instructions:
        text += f"[agent]\ninstructions = {json.dumps(instructions)}\n"
    path.write_text(text)
    return path


@pytest.fixture
def few_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warden with only its first built-ins (messages, lookups, memory): a prefix between
    Sonnet's and Haiku's caching minimums (the full tool set is long enough for any model)."""
    from bot import plugins

    first = {"messages", "lookups", "memory"}
    mine = [p for p in plugins.discover() if p.builtin and p.name in first]
    monkeypatch.setattr(plugins, "discover", lambda: list(mine))


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "WARDEN_MODEL", "WARDEN_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)


def test_an_invalid_log_format_is_a_clear_startup_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_key: None,
) -> None:
    policy = str(_policy(tmp_path))
    monkeypatch.setenv("WARDEN_LOG_FORMAT", "yaml")
    assert main(["check", "--config", policy]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warden: configuration error: ") and len(err.splitlines()) == 1
    assert "WARDEN_LOG_FORMAT='yaml'" in err and "'text' or 'json'" in err
    monkeypatch.setenv("WARDEN_LOG_FORMAT", "JSON")
    assert main(["check", "--config", policy]) == 0


# A few paragraphs of real operator guidance make the prefix long enough for any model.
GUIDANCE = " ".join(
    f"Rule {i}: before touching service number {i}, check its dashboard, its on-call rota "
    f"and the change calendar for window {i}; prefer staging first and explain the risk."
    for i in range(60)
)


def _check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], instructions: str = ""
) -> tuple[str, str]:
    assert main(["check", "--config", str(_policy(tmp_path, instructions))]) == 0
    got = capsys.readouterr()
    return got.out, got.err


@pytest.mark.parametrize("counted", [True, False], ids=["count_tokens", "estimate"])
def test_check_warns_when_the_cached_prefix_is_too_short(
    counted: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    anthropic_stub: AnthropicStub,
    no_key: None,
    few_tools: None,
) -> None:
    if counted:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_stub.url)
    how = "counted by the API" if counted else "estimate (no ANTHROPIC_API_KEY)"

    # Haiku needs 2 048 tokens: these tools and the system prompt alone fall short.
    monkeypatch.setenv("WARDEN_MODEL", "claude-haiku-4-5")
    out, err = _check(tmp_path, capsys)
    assert f"{how}; claude-haiku-4-5 caches from 2048" in out
    tiny = int(out.split("cached prompt prefix: ")[1].split(" tokens")[0])
    assert 0 < tiny < 2048
    assert err.startswith("warden: warning: the cached prompt prefix")
    assert f"{'' if counted else 'about '}{tiny} tokens, below the 2048" in err
    assert len(err.splitlines()) == 1

    # The same policy is long enough for a Sonnet model (1 024): no warning.
    monkeypatch.setenv("WARDEN_MODEL", "claude-sonnet-4-5")
    out, err = _check(tmp_path, capsys)
    assert f"cached prompt prefix: {tiny} tokens, {how}; claude-sonnet-4-5 caches from 1024" in out
    assert err == ""

    # With the operators' guidance in the system prompt, Haiku caches it too.
    monkeypatch.setenv("WARDEN_MODEL", "claude-haiku-4-5")
    out, err = _check(tmp_path, capsys, GUIDANCE)
    big = int(out.split("cached prompt prefix: ")[1].split(" tokens")[0])
    assert big >= 2048 > tiny and err == ""

    if counted:
        # Each check counted the prompt with the prefix and without it, for the model set.
        assert len(anthropic_stub.counted) == 6
        whole, bare = anthropic_stub.counted[:2]
        assert whole["model"] == "claude-haiku-4-5" and "system" in whole and "tools" in whole
        assert whole["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert "system" not in bare and "tools" not in bare
        assert anthropic_stub.seen == []  # counting is free: no message was created
    else:
        assert anthropic_stub.counted == []


def test_check_falls_back_to_the_estimate_when_counting_fails(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_key: None,
    few_tools: None,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("WARDEN_MODEL", "claude-haiku-4-5")
    out, err = _check(tmp_path, capsys)
    assert "estimate (the count-tokens call failed: APIConnectionError)" in out
    assert "warden: warning:" in err and "about " in err
