"""The real Bolt app over HTTP, against the local Slack workspace (`devslack`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.policy import Policy
from bot.settings import Settings
from devslack import Persona, Workspace
from handlers.runtime import Running, start
from tests.anthropic_stub import AnthropicStub
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
CHANNEL, OPS = "C0GENERAL", "C0OPS"


@dataclass
class Slack:
    ws: Workspace
    bot: Running
    tmp: Path

    @property
    def store(self) -> Any:
        return self.bot.warden.store

    def idle(self) -> None:
        assert self.bot.warden.workers.wait_idle(30)

    def runs(self, word: str = "restart") -> list[str]:
        log = self.tmp / "runbook.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [ln for ln in lines if ln.startswith(word)]

    def card(self, action_id: str) -> dict[str, Any]:
        """The card message for an action, as the workspace holds it now."""
        action = self.store.get_action(action_id)
        assert action is not None and action.card_ts and not action.card_ts.startswith("pend")
        msg = self.ws.message(action.channel, action.card_ts)
        assert msg is not None
        return msg  # type: ignore[no-any-return]

    def mention_and_card(self, text: str, user: str = REQUESTER) -> tuple[Any, dict[str, Any]]:
        delivery = self.ws.mention(user, CHANNEL, text)
        assert delivery.status == 200
        self.idle()
        actions = self.store.actions_with_status(
            [
                "awaiting_approval",
                "approved",
                "executing",
                "succeeded",
                "refused",
                "suggested",
                "failed",
            ],
            limit=1000,
        )
        action = max(actions, key=lambda a: a.created_at)
        return action, self.card(action.id)

    def approved_run(self, text: str, *approvers: str, user: str = REQUESTER) -> Any:
        """The product's happy path as one step: `user` mentions @warden with `text` → a card
        is posted → each approver clicks Approve → the runbook ran exactly once → the card
        says Succeeded and who approved → the audit chain verifies. Returns the action."""
        before = len(self.runs(""))
        action, card = self.mention_and_card(text, user)
        for approver in approvers or (APPROVER,):
            assert (
                self.ws.click(approver, action.channel, card["ts"], "warden_approve").status == 200
            )
            self.idle()
        action = self.store.get_action(action.id)
        assert action.status == "succeeded", action.status_note
        assert len(self.runs("")) == before + 1  # the runbook ran exactly once
        final = card_text(self.card(action.id))
        assert "Succeeded" in final
        assert all(f"<@{a}>" in final for a in approvers or (APPROVER,))
        _count, problems = self.store.verify_audit()
        assert problems == []
        return action


def card_text(msg: dict[str, Any]) -> str:
    """All visible text of a message's blocks, flattened."""
    parts: list[str] = [str(msg.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("text",):
                value = node.get(key)
                if isinstance(value, str):
                    parts.append(value)
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(msg.get("blocks") or [])
    return "\n".join(parts)


def buttons(msg: dict[str, Any]) -> list[str]:
    """The card's own buttons (Approve, Edit, Reject, Undo…), not its 👍 / 👎 feedback row."""
    out = []
    for block in msg.get("blocks") or []:
        if block.get("type") == "actions" and not str(block.get("block_id")).startswith(
            "feedback:"
        ):
            out += [e["text"]["text"] for e in block.get("elements", [])]
    return out


SlackFactory = Callable[..., Slack]


@pytest.fixture
def anthropic_stub() -> Iterator[AnthropicStub]:
    stub = AnthropicStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def slack_factory(database_url: str, policy: Policy, tmp_path: Path) -> Iterator[SlackFactory]:
    """Start Warden + the local workspace; `claude=` a stub turns the Claude planner on."""
    started: list[tuple[Running, Workspace]] = []

    def make(
        *, policy_: Policy | None = None, claude: AnthropicStub | None = None, **build: Any
    ) -> Slack:
        ws = Workspace(
            signing_secret=SECRET,
            bot_url="",
            bot_token=TOKEN,
            team_id="T0TEST",
            bot_user_id="U0WARDEN",
            personas=[
                Persona(id=REQUESTER, name="riley", label="Riley (requester)"),
                Persona(id=APPROVER, name="avery", label="Avery (approver)"),
                Persona(id=APPROVER2, name="blake", label="Blake (approver)"),
                Persona(id=ADMIN, name="sam", label="Sam (admin)"),
                Persona(id=STRANGER, name="sky", label="Sky (stranger)"),
            ],
            channels={CHANNEL: "general", OPS: "ops"},
        )
        ws.start()
        extra: dict[str, Any] = {}
        if claude is not None:
            extra = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": claude.url}
        settings = Settings(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=ws.api_url,
            DATABASE_URL=database_url,
            **extra,
        )
        bot = start(settings, host="127.0.0.1", port=0, policy=policy_ or policy, **build)
        ws.bot_url = bot.url + "/slack/events"
        started.append((bot, ws))
        return Slack(ws=ws, bot=bot, tmp=tmp_path)

    yield make
    for bot, ws in started:
        bot.stop()
        ws.stop()


@pytest.fixture
def slack(slack_factory: SlackFactory) -> Slack:
    return slack_factory()
