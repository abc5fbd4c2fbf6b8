"""`warden dev` in real headless Chromium: the page a newcomer sees, driven by clicks.

Each step saves a screenshot under artifacts/browser/. The page's JavaScript must log no
console errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
    def __init__(self, page: Page, url: str, name: str, errors: list[str]) -> None:
        self.page, self.url, self.name, self.errors = page, url, name, errors
        self.step = 0

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
    d = DevPage(page, ws.url, request.node.name, errors)  # type: ignore[attr-defined]
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


def test_app_home_lists_what_awaits_the_viewer(dev: DevPage) -> None:
    request_restart(dev)
    dev.act_as("approver")
    dev.page.locator("#home-link").click()
    expect(dev.page.locator("#home")).to_contain_text("restart_service", timeout=15_000)
    dev.shot("home")
