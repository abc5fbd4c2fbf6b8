"""`warden serve` as deployed: a front process that checks, stores and acknowledges Slack's
events and slash commands and forwards everything else, and a worker process that does
Warden's work. Every request here is signed as Slack signs it (or forged where that is the
point) and goes over HTTP to real processes, on both databases."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from devslack import Workspace
from handlers.http import MAX_BODY
from storage.db import Database
from storage.models import InboxEntry
from storage.repo import Store
from storage.spool import Spool, spool_path
from tests.conftest import ADMIN, APPROVER, REQUESTER, empty_database
from tests.served import Served, alive, free_port, serve_env, until
from tests.served import workspace as new_workspace
from tests.slack_fixtures import CHANNEL, OPS


def _policy(tmp: Path) -> Path:
    path = tmp / "warden.toml"
    path.write_text(
        f"""
[access]
admins = ["{ADMIN}"]
approvers = ["{APPROVER}"]
admin_channel = "{OPS}"

[runbooks.touch]
description = "Write a line"
command = ["sh", "-c", "echo ran $WARDEN_ACTION_ID >> {tmp / "ran.log"}"]
risk = "medium"

[runbooks.touch.params.what]
pattern = "^[a-z]{{1,20}}$"

[aliases]
"touch {{what}}" = {{ runbook = "touch" }}
"""
    )
    return path


@dataclass
class Deployed:
    ws: Workspace
    warden: Served
    store: Store
    tmp: Path

    def ran(self) -> list[str]:
        log = self.tmp / "ran.log"
        return log.read_text().splitlines() if log.exists() else []

    def cards(self) -> list[str]:
        """The ts of every card Warden posted (messages with buttons)."""
        return [
            str(c.response["ts"])
            for c in self.ws.calls("chat.postMessage")
            if c.params.get("blocks") and c.response.get("ok")
        ]

    def stored(self) -> int:
        """Requests stored (once per key): in the main inbox, or still in the front's spool
        (SQLite) if the worker has not imported them yet."""
        with self.store.db.read() as s:
            keys = set(s.exec(select(InboxEntry.key)).scalars().all())
        path = spool_path(self.store.db)
        spool = None if path is None else Spool.existing(path)
        if spool is not None:
            keys |= spool.keys(0, 10_000).keys()
            spool.dispose()
        return len(keys)


@contextmanager
def _deployment(database_url: str, tmp: Path) -> Iterator[Deployed]:
    ws = new_workspace()
    port = free_port()
    warden = Served(serve_env(ws.api_url, database_url, _policy(tmp), port), port)
    ws.bot_url = warden.url + "/slack/events"
    db = Database(database_url)
    try:
        warden.start()
        yield Deployed(ws, warden, Store(db), tmp)
    finally:
        warden.stop()
        db.dispose()
        ws.stop()


@pytest.fixture
def deployed(database_url: str, tmp_path: Path) -> Iterator[Deployed]:
    """A deployment of a test's own (the test stops or kills part of it)."""
    with _deployment(database_url, tmp_path) as d:
        yield d


# One deployment per database for the tests in TestOneDeployment (starting one costs two
# interpreters' start-up), each database's tests on one pytest-xdist worker.
@pytest.fixture(
    scope="class",
    params=[
        pytest.param(kind, marks=pytest.mark.xdist_group(f"front-{kind}"))
        for kind in ("sqlite", "postgresql")
    ],
)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("front")
    with _deployment(empty_database(request, request.param, tmp), tmp) as d:
        yield d


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        exc.close()
        return None
    except OSError:
        return None


class TestOneDeployment:
    """Tests that leave the deployment as they found it, up and answering, share one: each
    counts only what it adds (cards, stored requests, runs) to what was there before."""

    def test_a_request_goes_through_the_front_to_a_run_and_a_command_is_answered(
        self, shared: Deployed
    ) -> None:
        d = shared
        cards, ran = len(d.cards()), len(d.ran())
        succeeded = {a.id for a in d.store.actions_with_status(["succeeded", "executing"])}
        assert d.ws.mention(REQUESTER, CHANNEL, "touch one").status == 200
        (card_ts,) = until(lambda: d.cards()[cards:])
        # The click is forwarded to the worker, whose answer comes back through the front.
        assert d.ws.click(APPROVER, CHANNEL, card_ts, "warden_approve").status == 200
        (line,) = until(lambda: d.ran()[ran:])
        (action,) = [
            a
            for a in d.store.actions_with_status(["succeeded", "executing"])
            if a.id not in succeeded
        ]
        assert line == f"ran {action.id}"
        answer = d.ws.slash(ADMIN, CHANNEL, "/warden", "status", wait=20)
        assert answer.status == 200 and answer.late and "paused" not in answer.body.lower()
        assert answer.body.strip()
        health = json.loads(until(lambda: _get(d.warden.url + "/healthz")))
        assert health["ok"] is True and "policy_version" in health  # the worker's own answer

    def test_the_front_refuses_what_slack_did_not_send_and_stores_nothing(
        self, shared: Deployed
    ) -> None:
        d = shared
        ws = d.ws
        cards, stored = len(d.cards()), d.stored()
        event = json.dumps(
            {"type": "event_callback", "event_id": "EvFORGED", "event": {"type": "app_mention"}}
        ).encode()
        json_type = {"Content-Type": "application/json"}
        forged = {**json_type, **ws.sign(b"something else")}
        old = {**json_type, **ws.sign(event, ts=1_000_000_000)}
        assert ws.raw_post(event, json_type).status == 401  # unsigned
        assert ws.raw_post(event, forged).status == 401  # signed for another body
        assert ws.raw_post(event, old).status == 401  # outside the 5-minute window
        bad_stamp = {**json_type, **ws.sign(event), "X-Slack-Request-Timestamp": "abc"}
        assert ws.raw_post(event, bad_stamp).status == 401
        not_utf8 = "\udcff".encode("utf-8", "surrogatepass")
        assert ws.raw_post(not_utf8, {**json_type, **ws.sign(not_utf8)}).status == 401
        huge = b"{" + b" " * (MAX_BODY + 10) + b"}"
        assert ws.raw_post(huge, {**json_type, **ws.sign(huge)}).status == 413
        for body in (
            b"not json",
            json.dumps({"type": "event_callback", "event": "a string"}).encode(),
            b"[" * 100_000 + b"]" * 100_000,
        ):
            answer = ws.raw_post(body, {**json_type, **ws.sign(body)})
            assert answer.status == 400, (body[:20], answer.status)
            assert "Traceback" not in answer.body
        assert d.stored() == stored
        wake = urllib.request.Request(d.warden.url + "/internal/inbox", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wake, timeout=5)
        assert refused.value.code == 404  # the worker's wake-up is not reachable from outside
        refused.value.close()
        # And it still works.
        assert ws.mention(REQUESTER, CHANNEL, "touch two").status == 200
        until(lambda: d.cards()[cards:])
        assert d.stored() == stored + 1

    def test_a_retried_or_replayed_event_is_stored_and_handled_once(self, shared: Deployed) -> None:
        d = shared
        cards, stored = len(d.cards()), d.stored()
        first = d.ws.mention(REQUESTER, CHANNEL, "touch three")
        assert first.status == 200
        assert d.ws.redeliver(first).status == 200  # Slack's retry: same event_id, new signature
        assert d.ws.replay(first).status == 200  # the same signed bytes again
        assert d.ws.mention(REQUESTER, CHANNEL, "touch four").status == 200
        # One person's requests are handled in order: once the second card is up, the first
        # request and anything its copies could have caused has been handled.
        until(lambda: len(d.cards()) >= cards + 2)
        assert len(d.cards()) == cards + 2
        assert d.stored() == stored + 2


def test_a_request_acked_while_the_worker_is_down_is_handled_when_it_is_back(
    deployed: Deployed,
) -> None:
    d = deployed
    worker = d.warden.worker()
    os.kill(worker, signal.SIGKILL)
    until(lambda: not alive(worker))
    # The front still stores and acknowledges: Slack does not retry, nothing is lost.
    assert d.ws.mention(REQUESTER, CHANNEL, "touch five").status == 200
    assert d.stored() == 1
    (card_ts,) = until(d.cards, timeout=60)  # posted by the worker the front started again
    assert d.warden.worker() != worker
    assert d.ws.click(APPROVER, CHANNEL, card_ts, "warden_approve").status == 200
    assert len(until(d.ran)) == 1


def test_the_worker_stops_with_the_front(deployed: Deployed) -> None:
    d = deployed
    worker = d.warden.worker()
    assert d.warden.proc is not None
    d.warden.proc.send_signal(signal.SIGTERM)
    assert d.warden.proc.wait(timeout=30) == 0
    until(lambda: not alive(worker))


def test_the_worker_stops_when_the_front_dies(deployed: Deployed) -> None:
    d = deployed
    worker = d.warden.worker()
    assert d.warden.proc is not None
    d.warden.proc.send_signal(signal.SIGKILL)  # only the front: its pipe to the worker closes
    d.warden.proc.wait(timeout=10)
    until(lambda: not alive(worker))
