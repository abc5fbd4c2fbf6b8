"""`warden dev` in real headless Chromium: the page a newcomer sees, driven by clicks.

Each step saves a screenshot under artifacts/browser/. The page's JavaScript must log no
console errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from handlers.dev import start_dev

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


class DevPage:
    def __init__(self, page: Page, ws: Any, name: str, errors: list[str]) -> None:
        self.page, self.ws, self.url, self.name, self.errors = page, ws, ws.url, name, errors
        self.step = 0
        self.running: Any = None

    def shot(self, label: str) -> None:
        self.step += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"))

    def act_as(self, label_part: str) -> None:
        select = self.page.get_by_label("Acting as")
        option = select.locator("option", has_text=label_part).first
        select.select_option(value=option.get_attribute("value"))

    def send(self, text: str) -> None:
        box = self.page.locator("#composer-input")
        box.fill(text)
        box.press("Enter")

    def thread(self) -> Any:
        return self.page.locator("#thread-messages")

    def card_button(self, name: str) -> Any:
        return self.thread().get_by_role("button", name=name, exact=True).last


@pytest.fixture
def dev(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[DevPage]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ws, running = start_dev(
        0, None, database_url=f"sqlite:///{tmp_path / 'dev.db'}", anthropic_key=""
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(ws.url + "/")  # type: ignore[attr-defined]
    expect(page.get_by_label("Acting as")).to_be_visible()
    d = DevPage(page, ws, request.node.name, errors)
    d.running = running
    try:
        yield d
        assert errors == [], errors
    finally:
        context.close()
        running.stop()
        ws.stop()  # type: ignore[attr-defined]


def request_restart(d: DevPage, service: str = "checkout-api", who: str = "requester") -> None:
    d.act_as(who)
    d.send(f"@warden restart {service}")
    expect(d.thread()).to_contain_text("restart_service", timeout=15_000)
    expect(d.thread()).to_contain_text("Awaiting approval")
    d.shot("card")


def test_request_approve_and_see_the_result(dev: DevPage, tmp_path: Path) -> None:
    dev.shot("empty")
    request_restart(dev, who="admin")  # an approver asking for a high-risk action
    expect(dev.thread()).to_contain_text("would restart checkout-api")
    dev.card_button("Approve").click()  # approving their own request: four eyes says no
    dev.page.locator("#confirm-ok").click()
    expect(dev.page.locator("#messages")).to_contain_text("four eyes")
    dev.shot("four-eyes")
    dev.act_as("approver")
    # The four-eyes answer was ephemeral: only the admin who clicked sees it.
    expect(dev.page.locator("#messages")).not_to_contain_text("four eyes")
    dev.page.locator(".replies").first.click()
    dev.card_button("Approve").click()
    expect(dev.page.locator("#confirm-dialog")).to_contain_text("Approve")
    dev.shot("confirm")
    dev.page.locator("#confirm-ok").click()
    expect(dev.thread()).to_contain_text("Succeeded", timeout=15_000)
    expect(dev.thread()).to_contain_text("restarted checkout-api")
    expect(dev.card_button("Undo")).to_be_visible()
    dev.shot("succeeded")
    assert "restarted checkout-api" in (tmp_path / "warden-demo.log").read_text()


def test_reject_with_reason(dev: DevPage, tmp_path: Path) -> None:
    request_restart(dev)
    dev.act_as("approver")
    dev.page.locator(".replies").first.click()
    dev.card_button("Reject").click()
    modal = dev.page.locator("#modal")
    expect(modal).to_contain_text("Reject action")
    modal.locator("textarea").fill("not during the sale")
    dev.shot("reject-modal")
    modal.get_by_role("button", name="Reject").click()
    expect(dev.thread()).to_contain_text("Rejected", timeout=15_000)
    expect(dev.thread()).to_contain_text("not during the sale")
    dev.shot("rejected")
    assert not (tmp_path / "warden-demo.log").exists()


def test_edit_in_the_modal(dev: DevPage, tmp_path: Path) -> None:
    request_restart(dev)
    dev.act_as("approver")
    dev.page.locator(".replies").first.click()
    dev.card_button("Edit").click()
    modal = dev.page.locator("#modal")
    expect(modal).to_contain_text("Edit restart_service")
    field = modal.locator("input").first
    field.fill("Not Valid!")
    modal.get_by_role("button", name="Save").click()
    expect(modal).to_contain_text("does not match", timeout=15_000)
    dev.shot("edit-error")
    field.fill("payments-api")
    modal.get_by_role("button", name="Save").click()
    expect(dev.page.locator("#overlay")).to_be_hidden(timeout=15_000)
    expect(dev.thread()).to_contain_text("payments-api", timeout=15_000)
    expect(dev.thread()).to_contain_text("Edited by")
    dev.shot("edited")


def test_pause_then_approve_says_paused(dev: DevPage, tmp_path: Path) -> None:
    request_restart(dev)
    dev.act_as("admin")
    dev.send("/pause deploy freeze")
    expect(dev.page.locator("#messages")).to_contain_text("Paused. Nothing will run")
    dev.shot("paused")
    dev.act_as("approver")
    dev.page.locator(".replies").first.click()
    dev.card_button("Approve").click()
    dev.page.locator("#confirm-ok").click()
    expect(dev.page.locator("#messages")).to_contain_text(
        re.compile("Warden is paused"), timeout=15_000
    )
    expect(dev.card_button("Approve")).to_be_visible()
    dev.shot("approve-while-paused")
    assert not (tmp_path / "warden-demo.log").exists()
    dev.page.get_by_text("# ops").click()
    expect(dev.page.locator("#messages")).to_contain_text("paused Warden")
    dev.shot("ops-channel")


def test_undo(dev: DevPage, tmp_path: Path) -> None:
    request_restart(dev)
    dev.act_as("approver")
    dev.page.locator(".replies").first.click()
    dev.card_button("Approve").click()
    dev.page.locator("#confirm-ok").click()
    expect(dev.card_button("Undo")).to_be_visible(timeout=15_000)
    dev.card_button("Undo").click()
    expect(dev.thread()).to_contain_text("Undone", timeout=15_000)
    dev.shot("undone")
    assert "undo restart of checkout-api" in (tmp_path / "warden-demo.log").read_text()


def test_a_live_card_and_cancel(dev: DevPage, tmp_path: Path) -> None:
    """The demo's slow `deploy`: its card shows the time and the last lines while it runs
    (refreshed every 5 s), an approver's Cancel (after the confirm) stops it, and the card
    says who stopped it and offers the tool's Undo."""
    dev.act_as("requester")
    dev.send("@warden deploy checkout-api 1.4.2")
    expect(dev.thread()).to_contain_text("Awaiting approval", timeout=15_000)
    dev.act_as("approver")
    dev.page.locator(".replies").first.click()
    dev.card_button("Approve").click()
    expect(dev.thread()).to_contain_text("Running for", timeout=15_000)
    expect(dev.thread()).to_contain_text("Output so far", timeout=15_000)
    expect(dev.thread()).to_contain_text("deploying checkout-api 1.4.2: step", timeout=15_000)
    dev.shot("live")
    dev.card_button("Cancel").click()
    expect(dev.page.locator("#confirm-dialog")).to_contain_text("Stop this?")
    dev.shot("confirm-cancel")
    dev.page.locator("#confirm-ok").click()
    expect(dev.thread()).to_contain_text("Cancelled by @avery after", timeout=15_000)
    expect(dev.thread()).to_contain_text("may have done part of its work")
    expect(dev.thread()).to_contain_text("Output until it was stopped")
    expect(dev.thread()).not_to_contain_text("Output so far")
    expect(dev.card_button("Cancel")).to_have_count(0)
    dev.shot("cancelled")
    dev.card_button("Undo").click()
    expect(dev.thread()).to_contain_text("Undone", timeout=15_000)
    log = (tmp_path / "warden-demo.log").read_text()
    assert "rolled checkout-api back from 1.4.2" in log and "deployed" not in log


def test_a_reminder_dm_whose_approve_runs_the_card(dev: DevPage, tmp_path: Path) -> None:
    """A card still waiting after `gate.remind_after` (2 h in the demo policy) DMs its
    approvers with the card's own buttons: Warden's clock moves 3 h on and the reminder sweep
    runs (the job does the same every 30 s); Approve in the DM runs the restart once and the
    card says who was reminded."""
    request_restart(dev)
    lifecycle = dev.running.warden.lifecycle
    real = lifecycle.core.clock
    lifecycle.core.clock = lambda: real() + timedelta(hours=3)
    assert lifecycle.sweeps.waiting_cards() >= 1
    assert dev.running.warden.workers.wait_idle(30)
    dev.act_as("approver")
    dev.page.locator("#channel-list a", has_text="warden (DM)").click()
    expect(dev.page.locator("#messages")).to_contain_text("restart_service", timeout=15_000)
    dev.shot("reminder-dm")
    dev.page.locator("#messages").get_by_role("button", name="Approve", exact=True).last.click()
    expect(dev.page.locator("#confirm-dialog")).to_contain_text("Approve")
    dev.page.locator("#confirm-ok").click()
    dev.page.locator("#channel-list a", has_text="general").click()
    dev.page.locator(".replies").first.click()
    expect(dev.thread()).to_contain_text("Succeeded", timeout=15_000)
    expect(dev.thread()).to_contain_text("Reminded")
    dev.shot("approved-from-the-dm")
    log = (tmp_path / "warden-demo.log").read_text()
    assert log.count("restarted checkout-api") == 1


def test_app_home_lists_what_awaits_the_viewer(dev: DevPage) -> None:
    request_restart(dev)
    dev.act_as("approver")
    dev.page.locator("#home-link").click()
    expect(dev.page.locator("#home")).to_contain_text("restart_service", timeout=15_000)
    dev.shot("home")


def _bot_client(ws: Any) -> Any:
    from handlers.slack_client import make_web_client

    return make_web_client(ws.bot_token, ws.api_url)


def test_mrkdwn_emoji_and_hostile_text(dev: DevPage) -> None:
    """Formatting renders as Slack renders it; no message text can add markup or script."""
    ws = dev.ws
    client = _bot_client(ws)
    client.chat_postMessage(
        channel="C0GENERAL",
        text=(
            "*bold* and `x &lt; y` :white_check_mark: :double_vertical_bar: :warning: "
            "<@U0APPROVER> in <#C0OPS> see <https://example.com/?a=1&amp;b=2|the docs>\n"
            "```line1\n*not bold* <@U0ADMIN>```"
        ),
    )
    hostile = '<img src=x onerror="window.pwned=1"> <javascript:window.pwned=2|click> &lt;b&gt;'
    client.chat_postMessage(
        channel="C0GENERAL",
        text=hostile,
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "<i>head</i> :gear:"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": hostile}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "x",
                        "text": {"type": "plain_text", "text": '"><img src=x>'},
                    }
                ],
            },
        ],
    )
    dev.act_as("requester")
    dev.send("fish & chips <script>window.pwned=3</script> <b>typed</b> @avery")
    msgs = dev.page.locator("#messages")
    expect(msgs).to_contain_text("fish & chips <script>window.pwned=3</script> <b>typed</b>")
    dev.shot("mrkdwn")
    expect(msgs.locator("b", has_text="bold")).to_have_count(1)
    expect(msgs.locator("code")).to_have_text("x < y")
    expect(msgs.locator("pre")).to_contain_text("*not bold* <@U0ADMIN>")
    expect(msgs.locator(".mention", has_text="@avery")).to_have_count(2)  # bot's and typed
    expect(msgs.locator(".mention", has_text="#ops")).to_have_count(1)
    link = msgs.locator("a", has_text="the docs")
    expect(link).to_have_attribute("href", "https://example.com/?a=1&b=2")
    text = msgs.inner_text()
    for char in ("\u2705", "\u23f8", "\u26a0", "\u2699"):
        assert char in text
    assert ":white_check_mark:" not in text and ":gear:" not in text
    # Nothing hostile became markup: no images, no script links, no typed tags.
    expect(dev.page.locator("img")).to_have_count(0)
    expect(dev.page.locator("script:not([src])")).to_have_count(0)
    expect(msgs.locator("a[href^='javascript']")).to_have_count(0)
    expect(msgs.locator("b", has_text="typed")).to_have_count(0)
    expect(msgs.locator(".block.header i")).to_have_count(0)
    assert dev.page.evaluate("window.pwned") is None
    # The composer sends what a Slack client sends: escaped text, mentions as <@U…>.
    typed = [m for m in ws.messages("C0GENERAL") if m["user"] == "U0REQUESTER"][-1]
    assert typed["text"] == (
        "fish &amp; chips &lt;script&gt;window.pwned=3&lt;/script&gt; "
        "&lt;b&gt;typed&lt;/b&gt; <@U0APPROVER>"
    )


def test_thinking_status_shows_in_the_thread(dev: DevPage) -> None:
    ws = dev.ws
    dev.act_as("requester")
    dev.send("hello there")
    expect(dev.page.locator("#messages")).to_contain_text("hello there")
    ts = ws.messages("C0GENERAL")[-1]["ts"]
    client = _bot_client(ws)
    client.api_call(
        "assistant.threads.setStatus",
        json={"channel_id": "C0GENERAL", "thread_ts": ts, "status": "is thinking…"},
    )
    expect(dev.page.locator("#messages")).to_contain_text("warden is thinking…")
    client.chat_postMessage(channel="C0GENERAL", thread_ts=ts, text="done thinking")
    expect(dev.page.locator("#messages")).to_contain_text("1 reply")
    expect(dev.page.locator("#messages")).not_to_contain_text("is thinking")


# -- the local workspace's Web API answers as Slack does (no browser needed) ----------------


@pytest.fixture
def workspace() -> Iterator[Any]:
    from devslack import Persona, Workspace

    ws = Workspace(
        signing_secret="s",
        bot_url="http://127.0.0.1:9/unused",
        bot_token="xoxb-test",
        personas=[Persona(id="U0A", name="ann", label="Ann")],
        channels={"C0GENERAL": "general", "C0OPS": "ops"},
    )
    ws.start()
    try:
        yield ws
    finally:
        ws.stop()


def test_workspace_implements_every_method_the_bot_calls() -> None:
    from devslack import Workspace

    handlers = Path(__file__).resolve().parents[1] / "handlers"
    source = "\n".join((handlers / f).read_text() for f in ("slack_client.py", "slack_app.py"))
    methods = {m.replace("_", ".", 1) for m in re.findall(r"client\.(\w+)\(", source)}
    methods -= {"api.call"}
    methods |= set(re.findall(r'api_call\(\s*"([\w.]+)"', source))
    methods |= {"auth.test"}  # Bolt's authorize
    assert {"chat.postMessage", "assistant.threads.setStatus", "users.info"} <= methods
    missing = [m for m in methods if not hasattr(Workspace, "_m_" + m.replace(".", "_"))]
    assert missing == []


def test_web_api_errors_are_slacks(workspace: Any) -> None:
    from slack_sdk.errors import SlackApiError

    ws = workspace
    client = _bot_client(ws)

    def error(call: Any, **kwargs: Any) -> str:
        with pytest.raises(SlackApiError) as exc:
            call(**kwargs)
        return str(exc.value.response["error"])

    assert client.auth_test()["user_id"] == ws.bot_user_id
    from slack_sdk import WebClient

    assert error(WebClient(token="xoxb-wrong", base_url=ws.api_url).auth_test) == "invalid_auth"
    assert error(client.chat_postMessage, channel="C0NOPE", text="x") == "channel_not_found"
    assert error(client.api_call, api_method="chat.postMessage", json={"channel": "C0GENERAL"}) == (
        "no_text"
    )
    ts = client.chat_postMessage(channel="C0GENERAL", text="hi")["ts"]
    assert error(client.chat_update, channel="C0GENERAL", ts="1.2", text="x") == (
        "message_not_found"
    )
    user_msg = ws.say("U0A", "C0GENERAL", "mine")  # delivery fails: no bot behind bot_url
    assert user_msg is not None
    user_ts = ws.messages("C0GENERAL")[-1]["ts"]
    assert error(client.chat_update, channel="C0GENERAL", ts=user_ts, text="x") == (
        "cant_update_message"
    )
    assert error(client.chat_delete, channel="C0GENERAL", ts=user_ts) == "cant_delete_message"
    client.reactions_add(channel="C0GENERAL", timestamp=ts, name="eyes")
    assert error(client.reactions_add, channel="C0GENERAL", timestamp=ts, name="eyes") == (
        "already_reacted"
    )
    client.reactions_remove(channel="C0GENERAL", timestamp=ts, name="eyes")
    assert error(client.reactions_remove, channel="C0GENERAL", timestamp=ts, name="eyes") == (
        "no_reaction"
    )
    assert client.users_info(user="U0A")["user"]["name"] == "ann"
    assert error(client.users_info, user="U0NOBODY") == "user_not_found"
    assert error(client.views_open, trigger_id="1.bogus", view={"type": "modal"}) == (
        "invalid_trigger_id"
    )
    assert error(client.views_publish, user_id="U0A", view={"type": "modal"}) == (
        "invalid_arguments"
    )
    status = "assistant.threads.setStatus"
    assert (
        error(
            client.api_call, api_method=status, json={"channel_id": "C0GENERAL", "thread_ts": "1.2"}
        )
        == "invalid_arguments"
    )
    assert (
        error(
            client.api_call,
            api_method=status,
            json={"channel_id": "C0GENERAL", "thread_ts": "9.9", "status": "is thinking…"},
        )
        == "invalid_thread_ts"
    )
    client.api_call(
        status, json={"channel_id": "C0GENERAL", "thread_ts": ts, "status": "is thinking…"}
    )
    assert ws.thread_statuses("C0GENERAL") == {ts: "is thinking…"}
    client.api_call(status, json={"channel_id": "C0GENERAL", "thread_ts": ts, "status": ""})
    assert ws.thread_statuses("C0GENERAL") == {}
    # Ephemeral messages cannot be addressed by ts; deleting a reply updates its parent.
    eph = client.chat_postEphemeral(channel="C0GENERAL", user="U0A", text="psst")["message_ts"]
    assert error(client.chat_update, channel="C0GENERAL", ts=eph, text="x") == ("message_not_found")
    reply = client.chat_postMessage(channel="C0GENERAL", text="r", thread_ts=ts)["ts"]
    assert ws.message("C0GENERAL", ts)["reply_count"] == 1
    client.chat_delete(channel="C0GENERAL", ts=reply)
    assert ws.message("C0GENERAL", ts)["reply_count"] == 0
    client.chat_delete(channel="C0GENERAL", ts=ts)
    assert ws.message("C0GENERAL", ts) is None
    assert error(client.chat_delete, channel="C0GENERAL", ts=ts) == "message_not_found"


def test_only_the_page_itself_can_drive_the_workspace(workspace: Any) -> None:
    """Another site open in the same browser cannot post to /ui/ (it cannot send JSON
    without a preflight) and a rebound DNS name cannot read /ui/state."""
    import urllib.error
    import urllib.request

    def status(path: str, data: bytes | None, headers: dict[str, str]) -> int:
        req = urllib.request.Request(workspace.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    send = b'{"user": "U0A", "channel": "C0GENERAL", "text": "hi"}'
    json_ = {"Content-Type": "application/json"}
    assert status("/ui/send", send, {"Content-Type": "text/plain"}) == 403
    assert status("/ui/send", send, {**json_, "Origin": "https://evil.example"}) == 403
    assert status("/ui/state?user=U0A", None, {"Host": "evil.example:80"}) == 403
    assert workspace.messages("C0GENERAL") == []
    assert status("/ui/state?user=U0A&since=nope", None, {}) == 200
    assert status("/ui/send", send, {**json_, "Origin": workspace.url}) == 200
    assert [m["text"] for m in workspace.messages("C0GENERAL")] == ["hi"]


def test_dev_with_a_real_policy_gets_its_people_and_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = (Path(__file__).resolve().parents[1] / "handlers" / "demo" / "warden.toml").read_text()
    real = demo.replace("U0ADMIN", "U07ALICE").replace("U0APPROVER", "U07BOB")
    (tmp_path / "warden.toml").write_text(real.replace("C0OPS", "C07INCIDENT"))
    ws, running = start_dev(0, None, database_url=f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        labels = {p.id: p.label for p in ws.personas}
        assert labels == {
            "U0REQUESTER": "Riley (requester)",
            "U07ALICE": "U07ALICE (admin, approver)",
            "U07BOB": "U07BOB (approver)",
        }
        assert ws.admin_channel == "C07INCIDENT" and "C07INCIDENT" in ws.channels
        assert ws.slash("U07ALICE", "C0GENERAL", "/pause", "freeze").status == 200
        posted = ws.wait_for(lambda c: c.method == "chat.postMessage")
        assert posted.params["channel"] == "C07INCIDENT" and posted.response["ok"]
    finally:
        running.stop()
        ws.stop()


def test_warden_dev_prints_its_url_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    warden = Path(sys.executable).with_name("warden")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("ANTHROPIC_API_KEY", None)
    proc = subprocess.Popen(
        [str(warden), "dev", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url and not url.endswith(":0/")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert b"Acting as" in resp.read()
        assert (tmp_path / "warden-dev.db").exists()  # SQLite in the working directory
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "stopped." in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
