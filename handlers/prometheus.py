"""`GET /metrics` (Prometheus) and `GET /readyz`, read from the database on each scrape.

Every number comes from the database, so each replica exports the same values and a
Prometheus that scrapes any of them (or all) sees the deployment's truth. A scrape reads the
database once; the result is kept for `ttl` seconds, so a burst of scrapes (several
Prometheus servers, replicas behind one address) costs one read, and scrapes that arrive
while a read is under way answer from the previous one rather than wait for it.

Two kinds of series:

- **all-time counters** (`warden_…_total`) and the confidence histogram, from group-by
  queries (`storage/metrics.py`): Prometheus computes rates and increases from them;
- **window gauges** (`window="1h"|"24h"`): the rates of `bot/metrics.py` exactly as `/warden
  stats` shows them, overall (no `tool` label) and per tool (`tool="…"`); a rate with nothing
  to measure (no outcomes yet) is absent rather than 0.

Labels are tool names, tiers and fixed words only: never a user, channel or request id. A
counter's (and the histogram's) tier is the one the action was proposed at, which never
changes; `warden_actions_by_status`, a gauge, shows the tier now (an edit can raise it).
Neither endpoint needs a Slack signature, and neither says anything a scraper should not know.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.metrics import (
    CONFIDENCE_BUCKETS,
    FAST_APPROVAL,
    UNDONE,
    WINDOWS,
    Latency,
    Stats,
    breakdown,
)
from handlers.background_server import BackgroundServer
from storage.models import ActionStatus
from storage.repo import Store

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
GAUGE_WINDOWS = ("1h", "24h")
"""The windows every rate is exported for (each scrape computes each)."""
CACHE_SECONDS = 5.0
FIRST_READ_WAIT = 2.0
"""How long a scrape waits for a read another scrape started when there is none to reuse."""

# Window gauges: name → (help, the Stats value). Ratios are 0..1, times in seconds.
RATES: dict[str, tuple[str, Callable[[Stats], float | None]]] = {
    "warden_task_success_ratio": (
        "Outcomes that succeeded, were not undone and passed their outcome check, over outcomes",
        lambda s: s.task_success_rate,
    ),
    "warden_error_ratio": (
        "Tool failures plus failed outcome checks (plus, overall, requests the planner gave "
        "up on), over outcomes (plus those requests)",
        lambda s: s.error_rate,
    ),
    "warden_override_ratio": (
        "Cards people decided that were edited or rejected, over decided cards",
        lambda s: s.override_rate,
    ),
    "warden_manual_correction_ratio": (
        "Actions edited, undone or cancelled, over actions decided (by a person or the gate)",
        lambda s: s.correction_rate,
    ),
    "warden_tool_failure_ratio": (
        "Outcomes where the tool call failed or was cut off, over outcomes",
        lambda s: s.tool_failure_rate,
    ),
    "warden_failed_outcome_ratio": (
        "Outcomes where the call or its outcome check failed, over outcomes (what the tool "
        "error-rate alert and the autonomy governor watch)",
        lambda s: s.failure_rate,
    ),
    "warden_downvote_ratio": ("Thumbs down over all thumbs", lambda s: s.downvote_rate),
    "warden_cost_per_successful_task_usd": (
        "Model cost of the window's requests over its successful tasks",
        lambda s: s.cost_per_success,
    ),
    "warden_confidence_median": (
        "Median planner confidence of the window's proposals (refused ones excluded)",
        lambda s: s.confidence_median,
    ),
    "warden_fast_approval_ratio": (
        f"Approvals clicked within {FAST_APPROVAL.total_seconds():g} s of the card, over "
        "approvals clicked (the rubber-stamp measure; grants excluded)",
        lambda s: s.fast_approval_rate,
    ),
}
OVERALL_ONLY: dict[str, tuple[str, Callable[[Stats], float | None]]] = {
    "warden_cache_read_ratio": (
        "Input tokens read from the prompt cache, over all input tokens",
        lambda s: s.cache_share,
    ),
}
VOLUMES: dict[str, tuple[str, Callable[[Stats], float | None]]] = {
    "warden_window_proposals": (
        "Proposals in the window the gate did not refuse (each has a confidence)",
        lambda s: s.proposed - s.refused,
    ),
    "warden_window_outcomes": (
        "Runs in the window that finished (succeeded, failed or cut off)",
        lambda s: s.outcomes,
    ),
    "warden_window_decided_cards": (
        "Cards in the window that a person approved or rejected",
        lambda s: s.decided_cards,
    ),
}
LATENCIES: dict[str, tuple[str, Callable[[Stats], Latency]]] = {
    "warden_request_to_card_seconds": (
        "Request arrival to the action's proposal (quantile 0.5 and 0.95)",
        lambda s: s.to_card,
    ),
    "warden_approve_to_done_seconds": (
        "The decision to run to the run's end (quantile 0.5 and 0.95)",
        lambda s: s.approve_to_done,
    ),
    "warden_approval_wait_seconds": (
        "Card to a person's decision (quantile 0.5 and 0.95)",
        lambda s: s.approval_wait,
    ),
    "warden_time_to_recovery_seconds": (
        "A tool's failed outcome to its next successful one (quantile 0.5 and 0.95)",
        lambda s: s.recovery,
    ),
}


def _outcome(status: str) -> str:
    if status == ActionStatus.FAILED.value:
        return "failed"
    if status == ActionStatus.NEEDS_REVIEW.value:
        return "unknown"
    if status == ActionStatus.CANCELLED.value:
        return "cancelled"
    return "succeeded"


def _metric(name: str, doc: str, kind: str) -> Metric:
    # Counters are declared without `_total` (the exposition adds it back to the samples).
    return Metric(name.removesuffix("_total") if kind == "counter" else name, doc, kind)


class WardenCollector(Collector):
    """Reads every series from the database (at most once per `ttl` seconds)."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        ttl: float = CACHE_SECONDS,
        windows: Iterable[str] = GAUGE_WINDOWS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.windows = tuple(windows)
        self._lock = threading.Lock()
        self._cached: list[Metric] | None = None
        self._read_at = 0.0

    def collect(self) -> Iterator[Metric]:
        # One scrape reads; the others never queue behind it (they hold HTTP threads Slack's
        # requests need): they answer from the last read, or, before the first one is done,
        # wait at most FIRST_READ_WAIT seconds and then fail (a 503).
        if self._cached is None:
            got = self._lock.acquire(timeout=FIRST_READ_WAIT)
        else:
            got = self._lock.acquire(blocking=False)
        if not got:
            cached = self._cached
            if cached is None:
                raise TimeoutError("the first read of the metrics is still under way")
            yield from cached
            return
        try:
            if self._cached is None or time.monotonic() - self._read_at >= self.ttl:
                self._cached = self.read()
                self._read_at = time.monotonic()
            cached = self._cached
        finally:
            self._lock.release()
        yield from cached

    def read(self) -> list[Metric]:
        started = time.monotonic()
        families = [*self._totals(), *self._windows()]
        took = _metric(
            "warden_metrics_read_seconds", "How long the last read of these metrics took", "gauge"
        )
        took.add_sample("warden_metrics_read_seconds", {}, time.monotonic() - started)
        return [*families, took]

    # -- all time -------------------------------------------------------------------------

    def _totals(self) -> list[Metric]:
        store = self.store
        proposed: dict[tuple[str, str], int] = defaultdict(int)
        by_status: dict[tuple[str, str, str], int] = defaultdict(int)
        outcomes: dict[tuple[str, str, str], int] = defaultdict(int)
        checks: dict[tuple[str, str, str], int] = defaultdict(int)
        undos: dict[tuple[str, str], int] = defaultdict(int)
        edits: dict[tuple[str, str], int] = defaultdict(int)
        for row in store.action_counts():
            # Counters take the tier an action was proposed at, which never changes (an edit
            # that raised the tier would otherwise move it between series, and a counter that
            # goes down reads as a reset); the status gauge shows the tier now.
            key = (row.tool, row.proposed_risk)
            proposed[key] += row.count
            by_status[(row.tool, row.risk, row.status)] += row.count
            if row.finished:
                outcomes[(*key, _outcome(row.status))] += row.count
            if row.verify_status in ("passed", "failed", "error"):
                checks[(*key, row.verify_status)] += row.count
            if row.status in UNDONE:
                undos[key] += row.count
            if row.edited:
                edits[key] += row.count

        def counter(name: str, doc: str, labels: tuple[str, ...], values: dict[Any, int]) -> Metric:
            metric = _metric(name, doc, "counter")
            for key, value in sorted(values.items()):
                parts = key if isinstance(key, tuple) else (key,)
                metric.add_sample(name, dict(zip(labels, parts, strict=True)), value)
            return metric

        approvals: dict[tuple[str, str], int] = defaultdict(int)
        fast: dict[tuple[str, str], int] = defaultdict(int)
        for count in store.approval_counts(FAST_APPROVAL.total_seconds()):
            approvals[(count.tool, count.proposed_risk)] += count.approvals
            fast[(count.tool, count.proposed_risk)] += count.fast

        families = [
            counter(
                "warden_actions_total",
                "Actions proposed (a proposal of one tool call), by the tier proposed at",
                ("tool", "tier"),
                proposed,
            ),
            counter(
                "warden_tool_outcomes_total",
                "Tool calls that finished: succeeded, failed, unknown (cut off, needs review) "
                "or cancelled (a person stopped it)",
                ("tool", "tier", "outcome"),
                outcomes,
            ),
            counter(
                "warden_outcome_checks_total",
                "Outcome checks (a runbook's verify) done: passed, failed, or error",
                ("tool", "tier", "result"),
                checks,
            ),
            counter(
                "warden_undos_total", "Actions undone (or being undone)", ("tool", "tier"), undos
            ),
            counter(
                "warden_edits_total",
                "Actions whose arguments a person edited",
                ("tool", "tier"),
                edits,
            ),
            # Per tool and tier only: who approved is never a label (admins see it in Slack).
            counter(
                "warden_approvals_total",
                "Approvals people clicked (not given by a 30-minute grant)",
                ("tool", "tier"),
                approvals,
            ),
            counter(
                "warden_fast_approvals_total",
                f"Approvals clicked within {FAST_APPROVAL.total_seconds():g} s of the card "
                "(the rubber-stamp measure)",
                ("tool", "tier"),
                fast,
            ),
        ]
        current = _metric(
            "warden_actions_by_status",
            "Actions by their status now (tool, tier now, status)",
            "gauge",
        )
        for (tool, tier, status), value in sorted(by_status.items()):
            current.add_sample(
                "warden_actions_by_status", {"tool": tool, "tier": tier, "status": status}, value
            )
        families.append(current)

        # Standing votes: a changed mind moves one from up to down, so this is a gauge (a
        # counter that went down would read as a reset to rate() and increase()).
        votes: dict[tuple[str, str], int] = defaultdict(int)
        for vote in store.vote_counts():
            votes[(vote.tool, "up" if vote.vote > 0 else "down")] += vote.count
        standing = _metric(
            "warden_feedback_votes",
            "Thumbs up and down standing now on finished actions (a changed mind moves a vote)",
            "gauge",
        )
        for (tool, word), value in sorted(votes.items()):
            standing.add_sample("warden_feedback_votes", {"tool": tool, "vote": word}, value)
        families.append(standing)

        usage = store.usage_all_time()
        families.append(
            counter("warden_requests_total", "Requests received", (), {(): usage.requests})
        )
        families.append(
            counter(
                "warden_planner_failures_total",
                "Requests the planner gave up on (the model was unavailable after retries)",
                (),
                {(): usage.failed},
            )
        )
        families.append(
            counter(
                "warden_model_tokens_total",
                "Model tokens: input (uncached), output, cache_read, cache_write",
                ("kind",),
                {
                    ("input",): usage.input_tokens,
                    ("output",): usage.output_tokens,
                    ("cache_read",): usage.cache_read_tokens,
                    ("cache_write",): usage.cache_write_tokens,
                },
            )
        )
        cost = _metric("warden_model_cost_usd_total", "Model cost in US dollars", "counter")
        cost.add_sample("warden_model_cost_usd_total", {}, usage.cost_usd)
        families.append(cost)

        now = self.clock()
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        today = _metric(
            "warden_model_cost_usd_today",
            "Model cost since midnight UTC in US dollars (what the daily cost alert watches)",
            "gauge",
        )
        today.add_sample(
            "warden_model_cost_usd_today", {}, store.usage_between(midnight, now).cost_usd
        )
        families.append(today)

        histogram = HistogramMetricFamily(
            "warden_confidence",
            "Planner confidence of proposals (refused ones excluded)",
            labels=["tool", "tier"],
        )
        for conf in store.confidence_counts(CONFIDENCE_BUCKETS):
            buckets = [
                (_le(bound), float(n))
                for bound, n in zip(CONFIDENCE_BUCKETS, conf.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(conf.count)))
            histogram.add_metric([conf.tool, conf.proposed_risk], buckets, conf.total)
        families.append(histogram)
        return families

    # -- windows ----------------------------------------------------------------------------

    def _windows(self) -> list[Metric]:
        now = self.clock()
        families: dict[str, Metric] = {}

        def add(name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
            metric = families.get(name)
            if metric is None:
                metric = families[name] = _metric(name, doc, "gauge")
            if value is not None:
                metric.add_sample(name, labels, float(value))

        for window in self.windows:
            overall, tools = breakdown(self.store, now, WINDOWS[window])
            rows: list[tuple[dict[str, str], Stats]] = [({"window": window}, overall)]
            rows += [({"window": window, "tool": name}, s) for name, s in tools.items()]
            for labels, stats in rows:
                for name, (doc, value) in (RATES | VOLUMES).items():
                    add(name, doc, labels, value(stats))
                for name, (doc, latency) in LATENCIES.items():
                    lat = latency(stats)
                    add(name, doc, {**labels, "quantile": "0.5"}, lat.median)
                    add(name, doc, {**labels, "quantile": "0.95"}, lat.p95)
            for name, (doc, value) in OVERALL_ONLY.items():
                add(name, doc, {"window": window}, value(overall))
        return list(families.values())


def _le(bound: float) -> str:
    return repr(float(bound))


class Probes:
    """`GET /metrics` and `GET /readyz`: a WSGI app of its own (Socket Mode's metrics port)
    and the handler `handlers/http.py` routes both paths to."""

    PATHS = ("/metrics", "/readyz")

    def __init__(
        self, store: Store, clock: Callable[[], datetime], *, ttl: float = CACHE_SECONDS
    ) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WardenCollector(store, clock, ttl=ttl))

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path not in self.PATHS:
            return _json(start, "404 Not Found", {"error": "not found"})
        if method != "GET":
            return _json(start, "405 Method Not Allowed", {"error": "use GET"})
        if path == "/readyz":
            return self.readyz(start)
        return self.metrics(start)

    def metrics(self, start: StartResponse) -> list[bytes]:
        try:
            data = generate_latest(self.registry)
        except Exception as exc:
            log.error("metrics: could not read the database: %s", type(exc).__name__)
            return _json(start, "503 Service Unavailable", {"ok": False, "error": "database"})
        start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(data)))])
        return [data]

    def readyz(self, start: StartResponse) -> list[bytes]:
        """200 when the database answers and its schema is the code's newest revision."""
        try:
            current, head = self.store.schema_revisions()
        except Exception as exc:
            log.error("readiness: database unavailable: %s", type(exc).__name__)
            return _json(start, "503 Service Unavailable", {"ok": False, "error": "database"})
        if current != head:
            return _json(
                start,
                "503 Service Unavailable",
                {"ok": False, "error": "migrations pending", "revision": current, "expected": head},
            )
        return _json(start, "200 OK", {"ok": True, "revision": current})


def _json(start: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class MetricsServer:
    """The metrics port (`WARDEN_METRICS_PORT`): `/metrics` and `/readyz` on their own thread."""

    def __init__(self, probes: Probes, host: str, port: int) -> None:
        from waitress.server import create_server

        self.http = BackgroundServer(
            create_server(probes, host=host, port=port, threads=4, ident="warden"), "warden-metrics"
        )

    @property
    def port(self) -> int:
        return self.http.port

    def start(self) -> MetricsServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
