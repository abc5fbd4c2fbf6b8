"""Every rate of bot/metrics.py on both databases, from actions moved through their lifecycle
by the Store; what `GET /metrics` exports from the same rows; `/readyz` on a current, an older
and an unreachable database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import CONFIDENCE_BUCKETS, report, window_stats, worst
from handlers.prometheus import Probes, WardenCollector
from storage.db import Database
from storage.models import Action, ActionStatus, Feedback, Request, RequestStatus
from storage.repo import Audit, Store

BASE = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
S = ActionStatus


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


@dataclass
class Maker:
    db: Database
    store: Store
    n: int = 0

    def request(
        self,
        minutes: float,
        *,
        cost: float = 0.0,
        tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        status: str = RequestStatus.PLANNED,
    ) -> str:
        self.n += 1
        rid = f"r{self.n}"
        inp, out, read, write = tokens
        with self.db.write() as s:
            s.add(
                Request(
                    id=rid,
                    trace_id=f"t{self.n}",
                    channel="C0GENERAL",
                    thread_ts=f"1.{self.n:06d}",
                    message_ts=f"1.{self.n:06d}",
                    requester="U0REQ",
                    text="do something",
                    status=status,
                    cost_usd=cost,
                    input_tokens=inp,
                    output_tokens=out,
                    cache_read_tokens=read,
                    cache_write_tokens=write,
                    created_at=at(minutes),
                )
            )
        return rid

    def action(
        self,
        tool: str,
        minutes: float,
        *,
        confidence: float = 0.9,
        card: bool = True,
        risk: str = "medium",
        request: str | None = None,
        cost: float = 0.0,
        tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        delay: float = 2.0,
    ) -> str:
        """A proposal `delay` seconds after its request: waiting for a click (`card`), or
        approved by the gate at once."""
        rid = request or self.request(minutes - delay / 60, cost=cost, tokens=tokens)
        self.n += 1
        aid = f"a{self.n}"
        created = at(minutes)
        with self.db.write() as s:
            s.add(
                Action(
                    id=aid,
                    request_id=rid,
                    trace_id="t",
                    tool=tool,
                    args_json="{}",
                    policy_version="v1",
                    risk=risk,
                    confidence=confidence,
                    requester="U0REQ",
                    channel="C0GENERAL",
                    thread_ts="1.000001",
                    status=S.AWAITING_APPROVAL if card else S.APPROVED,
                    required_approvals=1 if card else 0,
                    decided_at=None if card else created,
                    created_at=created,
                )
            )
        return aid

    def move(self, aid: str, to: ActionStatus, minutes: float, **values: Any) -> None:
        stamp = {
            S.APPROVED: "decided_at",
            S.REJECTED: "decided_at",
            S.EXECUTING: "started_at",
            S.SUCCEEDED: "finished_at",
            S.FAILED: "finished_at",
            S.NEEDS_REVIEW: "finished_at",
        }.get(to)
        current = self.store.get_action(aid)
        assert current is not None
        if stamp:
            values[stamp] = at(minutes)
        moved = self.store.transition(
            aid, [current.status], to, Audit(actor="test", kind="test.move"), values=values
        )
        assert moved is not None, (aid, current.status, to)

    def run(self, aid: str, decided: float | None, finished: float, end: ActionStatus) -> None:
        if decided is not None:
            self.move(aid, S.APPROVED, decided)
        started = finished - 0.5 if decided is None else decided + 0.5
        self.move(aid, S.EXECUTING, started)
        self.move(aid, end, finished)

    def vote(self, aid: str, tool: str, person: str, vote: int) -> None:
        with self.db.write() as s:
            s.add(Feedback(action_id=aid, person=person, vote=vote, tool=tool))


@pytest.fixture
def make(db: Database) -> Maker:
    return Maker(db, Store(db))


def test_no_data_is_none_not_zero(make: Maker) -> None:
    stats = window_stats(make.store, BASE, BASE + HOUR)
    assert (stats.proposed, stats.outcomes, stats.requests) == (0, 0, 0)
    for rate in (
        stats.task_success_rate,
        stats.error_rate,
        stats.override_rate,
        stats.correction_rate,
        stats.tool_failure_rate,
        stats.failure_rate,
        stats.downvote_rate,
        stats.cost_per_success,
        stats.cache_share,
        stats.confidence_median,
        stats.recovery.median,
        stats.to_card.median,
    ):
        assert rate is None
    rep = report(make.store, BASE + HOUR, HOUR)
    assert rep.tools == {} and worst(rep.tools) == []
    # A requested but never proposed window: requests count, rates stay unknown.
    make.request(5, cost=0.5, status=RequestStatus.FAILED)
    stats = window_stats(make.store, BASE, BASE + HOUR)
    assert stats.requests == 1 and stats.planner_failures == 1 and stats.outcomes == 0
    assert stats.error_rate == 1.0  # the only thing that happened was the planner giving up
    assert stats.task_success_rate is None and stats.cost_per_success is None


def scenario(make: Maker) -> dict[str, str]:
    """One hour of actions (and one in the hour before) covering every kind of end."""
    m = make
    ids: dict[str, str] = {}
    tokens = (100, 40, 300, 100)
    # ok1: waiting, re-checked by a rule change (revision 2: nobody's override), approved
    # after 60 s, succeeded, its outcome check passed.
    ids["ok1"] = m.action(
        "restart_service", 1, confidence=0.95, risk="high", cost=0.2, tokens=tokens
    )
    m.move(ids["ok1"], S.AWAITING_APPROVAL, 1.5, revision=2)
    m.run(ids["ok1"], 2, 3, S.SUCCEEDED)
    with m.db.write() as s:
        a = s.get(Action, ids["ok1"])
        assert a is not None
        a.verify_status = "passed"
    # fail: approved after 120 s, the call failed at minute 10.
    ids["fail"] = m.action("restart_service", 5, confidence=0.85, risk="high", cost=0.2)
    m.run(ids["fail"], 7, 10, S.FAILED)
    # ok2: the next success of the same tool at minute 20: recovery 10 minutes.
    ids["ok2"] = m.action("restart_service", 15, confidence=0.9, risk="high", cost=0.2)
    m.run(ids["ok2"], 16, 20, S.SUCCEEDED)
    # rejected: an override.
    ids["rejected"] = m.action("restart_service", 21, confidence=0.6, risk="high", cost=0.2)
    m.move(ids["rejected"], S.REJECTED, 22)
    # edited: a person edited it (an override and a correction), it ran, then was undone.
    ids["edited"] = m.action("flush_cache", 23, confidence=0.82, cost=0.1)
    m.move(ids["edited"], S.AWAITING_APPROVAL, 24, revision=2, edited_by="U0APPR1")
    m.run(ids["edited"], 25, 26, S.SUCCEEDED)
    m.move(ids["edited"], S.UNDOING, 27)
    m.move(ids["edited"], S.UNDONE, 28)
    # checked: auto (the gate decided at once), succeeded, but its outcome check failed.
    ids["checked"] = m.action("flush_cache", 30, confidence=0.97, card=False, cost=0.1)
    m.run(ids["checked"], None, 31, S.SUCCEEDED)
    with m.db.write() as s:
        a = s.get(Action, ids["checked"])
        assert a is not None
        a.verify_status = "failed"
    # refused: no confidence, no decision.
    ids["refused"] = m.action("scale", 32, confidence=0.1, cost=0.1)
    m.move(ids["refused"], S.REFUSED, 32)
    # cut: approved, cut off while running (outcome unknown: a tool failure).
    ids["cut"] = m.action("scale", 33, confidence=0.88, cost=0.1)
    m.run(ids["cut"], 34, 35, S.NEEDS_REVIEW)
    # waiting: a card nobody decided yet.
    ids["waiting"] = m.action("scale", 40, confidence=0.7, cost=0.1)
    # A request the planner gave up on.
    m.request(45, cost=0.05, status=RequestStatus.FAILED)
    # The hour before: one success, one rejection.
    ids["old_ok"] = m.action("restart_service", -30, confidence=0.99, risk="high", cost=0.1)
    m.run(ids["old_ok"], -29, -28, S.SUCCEEDED)
    ids["old_rej"] = m.action("restart_service", -20, confidence=0.9, risk="high", cost=0.1)
    m.move(ids["old_rej"], S.REJECTED, -19)
    m.vote(ids["ok1"], "restart_service", "U0REQ", 1)
    m.vote(ids["ok1"], "restart_service", "U0APPR1", 1)
    m.vote(ids["fail"], "restart_service", "U0REQ", -1)
    m.vote(ids["old_ok"], "restart_service", "U0REQ", -1)
    return ids


def test_every_rate_and_its_edge_cases(make: Maker) -> None:
    scenario(make)
    s = window_stats(make.store, BASE, BASE + HOUR)
    assert (s.proposed, s.refused) == (9, 1)
    # Cards: every proposal but the auto one and the refused one; decided by people: 6.
    assert (s.cards, s.decided_cards, s.overrides) == (7, 6, 2)
    assert (s.decided, s.corrections) == (7, 1)  # + the gate's decision; the edited-and-undone
    assert (s.outcomes, s.successes, s.tool_failures, s.verify_failures, s.undone) == (
        6,
        2,
        2,
        1,
        1,
    )
    assert s.planner_failures == 1 and s.requests == 10
    assert s.task_success_rate == pytest.approx(2 / 6)
    assert s.tool_failure_rate == pytest.approx(2 / 6)
    assert s.failure_rate == pytest.approx(3 / 6)
    assert s.error_rate == pytest.approx((2 + 1 + 1) / (6 + 1))
    assert s.override_rate == pytest.approx(2 / 6)
    assert s.correction_rate == pytest.approx(1 / 7)
    assert (s.thumbs_up, s.thumbs_down) == (2, 1)
    assert s.downvote_rate == pytest.approx(1 / 3)
    cost = 0.2 * 4 + 0.1 * 5 + 0.05
    assert s.cost_usd == pytest.approx(cost)
    assert s.cost_per_success == pytest.approx(cost / 2)
    assert s.cache_share == pytest.approx(300 / 500)
    assert s.recovery.count == 1 and s.recovery.median == pytest.approx(600)
    assert s.to_card.median == pytest.approx(2.0) and s.to_card.count == 8
    # Approval wait: card → a person's decision, for the six decided cards.
    assert s.approval_wait.count == 6
    assert s.approval_wait.median == pytest.approx(60.0)
    assert s.approve_to_done.count == 6  # every run that started and finished
    confidences = sorted([0.95, 0.85, 0.9, 0.6, 0.82, 0.97, 0.88, 0.7])
    assert s.confidence_median == pytest.approx((confidences[3] + confidences[4]) / 2)
    assert sum(s.confidence_histogram) == 8
    assert s.confidence_histogram[0] == 0  # nothing at or below 0.5: the refused is excluded
    assert s.confidence_histogram[CONFIDENCE_BUCKETS.index(0.7)] == 2  # 0.6 and 0.7

    rep = report(make.store, BASE + HOUR, HOUR)
    assert rep.overall == s
    assert set(rep.tools) == {"restart_service", "flush_cache", "scale"}
    restart = rep.tools["restart_service"]
    assert (restart.outcomes, restart.successes, restart.decided_cards, restart.overrides) == (
        3,
        2,
        4,
        1,
    )
    assert restart.cost_usd == pytest.approx(0.8) and restart.cost_per_success == pytest.approx(0.4)
    assert restart.downvote_rate == pytest.approx(1 / 3)
    flush = rep.tools["flush_cache"]
    assert flush.failure_rate == pytest.approx(0.5) and flush.correction_rate == pytest.approx(0.5)
    assert flush.recovery.count == 0  # an undone run is neither a failure nor a success
    assert rep.tools["scale"].tool_failure_rate == 1.0
    assert [w.tool for w in worst(rep.tools)] == ["scale", "flush_cache", "restart_service"]
    # The trend's baseline: the hour before, on its own.
    prev = rep.previous
    assert (prev.outcomes, prev.successes, prev.decided_cards, prev.overrides) == (1, 1, 2, 1)
    assert prev.task_success_rate == 1.0 and prev.override_rate == 0.5
    assert prev.downvote_rate == 1.0
    # One tool's window read on its own agrees with the report's row for it.
    assert window_stats(make.store, BASE, BASE + HOUR, "restart_service") == restart


def test_recovery_is_per_tool_and_measured_from_the_first_failure(make: Maker) -> None:
    m = make
    a = m.action("restart_service", 1)
    m.run(a, 1.5, 2, S.FAILED)
    b = m.action("restart_service", 3)
    m.run(b, 3.5, 4, S.FAILED)
    other = m.action("flush_cache", 4.5)
    m.run(other, 4.6, 5, S.SUCCEEDED)  # another tool's success is not a recovery
    c = m.action("restart_service", 6)
    m.run(c, 6.5, 7, S.SUCCEEDED)
    s = window_stats(m.store, BASE, BASE + HOUR)
    assert s.recovery.count == 1 and s.recovery.median == pytest.approx(5 * 60)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str, **labels: str) -> float | None:
    for family in fams.values():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_the_collector_exports_the_same_numbers(make: Maker) -> None:
    scenario(make)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WardenCollector(make.store, lambda: BASE + HOUR))
    text = generate_latest(registry).decode()
    fams = families(text)
    hi = {"tool": "restart_service", "tier": "high"}
    assert value(fams, "warden_actions_total", **hi) == 6
    assert value(fams, "warden_tool_outcomes_total", **hi, outcome="succeeded") == 3
    assert value(fams, "warden_tool_outcomes_total", **hi, outcome="failed") == 1
    scale = {"tool": "scale", "tier": "medium"}
    assert value(fams, "warden_tool_outcomes_total", **scale, outcome="unknown") == 1
    flush = {"tool": "flush_cache", "tier": "medium"}
    assert value(fams, "warden_outcome_checks_total", **flush, result="failed") == 1
    assert value(fams, "warden_outcome_checks_total", **hi, result="passed") == 1
    assert value(fams, "warden_undos_total", **flush) == 1
    assert value(fams, "warden_edits_total", **flush) == 1
    assert value(fams, "warden_actions_by_status", **hi, status="rejected") == 2
    assert value(fams, "warden_feedback_votes", tool="restart_service", vote="up") == 2
    assert value(fams, "warden_feedback_votes", tool="restart_service", vote="down") == 2
    assert value(fams, "warden_requests_total") == 12
    assert value(fams, "warden_planner_failures_total") == 1
    assert value(fams, "warden_model_tokens_total", kind="cache_read") == 300
    assert value(fams, "warden_model_tokens_total", kind="input") == 100
    assert value(fams, "warden_model_cost_usd_total") == pytest.approx(0.2 * 4 + 0.1 * 7 + 0.05)
    # The confidence histogram is cumulative, refused proposals excluded.
    assert value(fams, "warden_confidence_bucket", **hi, le="0.7") == 1
    assert value(fams, "warden_confidence_bucket", **hi, le="+Inf") == 6
    assert value(fams, "warden_confidence_count", **hi) == 6
    assert value(fams, "warden_confidence_count", **scale) == 2
    # Window gauges: the same numbers as bot/metrics.py, overall (no tool label) and per tool.
    s = window_stats(make.store, BASE, BASE + HOUR)
    assert value(fams, "warden_task_success_ratio", window="1h") == pytest.approx(2 / 6)
    assert value(fams, "warden_error_ratio", window="1h") == pytest.approx(s.error_rate)
    assert value(fams, "warden_override_ratio", window="1h") == pytest.approx(2 / 6)
    assert value(fams, "warden_manual_correction_ratio", window="1h") == pytest.approx(1 / 7)
    assert value(fams, "warden_tool_failure_ratio", window="1h") == pytest.approx(2 / 6)
    assert value(fams, "warden_failed_outcome_ratio", window="1h") == pytest.approx(0.5)
    assert value(fams, "warden_downvote_ratio", window="1h") == pytest.approx(1 / 3)
    assert value(fams, "warden_cache_read_ratio", window="1h") == pytest.approx(0.6)
    assert value(fams, "warden_cost_per_successful_task_usd", window="1h") == pytest.approx(
        s.cost_per_success
    )
    assert value(fams, "warden_confidence_median", window="1h") == pytest.approx(
        s.confidence_median
    )
    assert value(fams, "warden_window_outcomes", window="1h") == 6
    assert value(fams, "warden_window_decided_cards", window="1h") == 6
    assert value(fams, "warden_window_proposals", window="1h") == 8
    assert value(
        fams, "warden_time_to_recovery_seconds", window="1h", quantile="0.5"
    ) == pytest.approx(600)
    assert value(
        fams, "warden_request_to_card_seconds", window="1h", quantile="0.95"
    ) == pytest.approx(2)
    assert value(
        fams, "warden_failed_outcome_ratio", window="1h", tool="flush_cache"
    ) == pytest.approx(0.5)
    # 24h holds the hour before too.
    assert value(fams, "warden_window_outcomes", window="24h") == 7
    assert value(fams, "warden_override_ratio", window="1h", tool="flush_cache") == 1.0
    # A rate with nothing to measure is absent, not 0.
    none = {"window": "1h", "tool": "scale", "quantile": "0.5"}
    assert value(fams, "warden_time_to_recovery_seconds", **none) is None
    assert value(fams, "warden_downvote_ratio", window="1h", tool="scale") is None
    # Labels are tools, tiers and fixed words: never a user, a channel or a request.
    assert "U0REQ" not in text and "U0APPR1" not in text and "C0GENERAL" not in text
    allowed = {
        "tool",
        "tier",
        "status",
        "outcome",
        "result",
        "vote",
        "kind",
        "window",
        "quantile",
        "le",
    }
    for family in fams.values():
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample


def test_a_burst_of_scrapes_reads_the_database_once(make: Maker) -> None:
    reads = 0
    real = make.store.action_counts

    def counting() -> Any:
        nonlocal reads
        reads += 1
        return real()

    make.store.action_counts = counting  # type: ignore[method-assign]
    collector = WardenCollector(make.store, lambda: BASE, ttl=60)
    for _ in range(5):
        list(collector.collect())
    assert reads == 1
    collector.ttl = 0
    list(collector.collect())
    assert reads == 2


def call(app: Probes, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method}, start))
    return seen["status"], seen["headers"], body


def test_readyz_needs_a_reachable_database_at_the_code_s_revision(db: Database) -> None:
    script = ScriptDirectory.from_config(db.alembic_config())
    head = script.get_current_head()
    older = script.get_revision(head).down_revision
    assert head and isinstance(older, str)
    probes = Probes(Store(db), lambda: BASE)
    status, _, body = call(probes, "/readyz")
    assert status.startswith("200") and json.loads(body) == {"ok": True, "revision": head}
    assert call(probes, "/readyz", "POST")[0].startswith("405")
    command.downgrade(db.alembic_config(), older)
    status, _, body = call(probes, "/readyz")
    assert status.startswith("503")
    assert json.loads(body) == {
        "ok": False,
        "error": "migrations pending",
        "revision": older,
        "expected": head,
    }
    # /metrics on a database it cannot read (from before the metrics' own columns, 0005)
    # says so, without details.
    command.downgrade(db.alembic_config(), "0004")
    status, _, body = call(probes, "/metrics")
    assert status.startswith("503") and json.loads(body) == {"ok": False, "error": "database"}
    command.upgrade(db.alembic_config(), "head")
    assert call(probes, "/readyz")[0].startswith("200")
    status, headers, _ = call(probes, "/metrics")
    assert status.startswith("200") and headers["Content-Type"].startswith("text/plain")


def test_readyz_on_an_unreachable_database(tmp_path: Any) -> None:
    gone = Database(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'warden.db'}")
    try:
        status, _, body = call(Probes(Store(gone), lambda: BASE), "/readyz")
    finally:
        gone.dispose()
    assert status.startswith("503") and json.loads(body) == {"ok": False, "error": "database"}


def test_stats_text_shows_each_rate_with_its_trend(make: Maker) -> None:
    from bot.reports import rate_lines, stats_lines, trend

    scenario(make)
    rep = report(make.store, BASE + HOUR, HOUR)
    lines = rate_lines(rep.overall, rep.previous)
    assert "Task success: 33% (↓ from 100%)" in lines
    assert "Override rate: 33% (↓ from 50%)" in lines
    assert "Tool failure rate: 33% (↑ from 0%)" in lines
    assert "👎 share: 33% (↓ from 100%)" in lines
    text = "\n".join(stats_lines(rep.overall, rep.previous))
    assert "9 proposed (1 refused)" in text and "1 failed their check, 1 undone" in text
    assert "*time to recovery*: median 10m 0s" in text
    assert trend(None, 0.5) == "—" and trend(0.5, None) == "50% (none before)"
    assert trend(0.5, 0.5) == "50% (= 50% before)"
