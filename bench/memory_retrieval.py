"""Benchmark: how fast does memory retrieval (`Store.search_facts`) answer as memory grows?

Run on demand (`python bench/memory_retrieval.py [--db sqlite|postgresql|both] [--quick]`); not
part of the test suite. Writes bench/results-memory.json; see bench/README.md.

For each database (a SQLite file in a temporary directory; PostgreSQL at `--pg`, whose
`public` schema is DROPPED and recreated), the schema is built by the real migrations and
filled, in bulk, with 1 k, then 10 k, then 100 k facts of a workspace of 500 people and 100
channels: profiles and preferences in user scopes, decisions (with their reasons) and tasks
in channel scopes, service owners and runbooks in the workspace scope — a year of them, with
slots superseded along the way and tasks expiring after two weeks, as the product would
store them. At each size, request-like queries ("restart payments-db in staging") from a
random person in a random channel (scopes: that user, that channel, the workspace) are timed
one at a time and from 4 threads at once; an empty query (the "most recent facts" listing)
and `decisions_about` are timed one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, create_engine, func, insert, select, text, update

from storage.db import Database, normalise_url
from storage.memory import fact_digest
from storage.models import Fact, FactKind
from storage.repo import Store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test_mem"
SIZES = (1_000, 10_000, 100_000)
THREADS = 4
TARGET_P50_MS = 10.0
SPAN = timedelta(days=365)  # the 100 k facts are a year of memory
START = datetime(2026, 1, 1, tzinfo=UTC)

USERS = [f"U{i:05d}" for i in range(500)]
CHANNELS = [f"C{i:04d}" for i in range(100)]
FIRST = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yusuf",
    "zoe",
    "amara",
    "bjorn",
    "chen",
    "dmitri",
    "elena",
    "fatima",
    "goran",
    "hana",
    "ingrid",
]
SERVICES = [
    "payments-db",
    "payments-api",
    "checkout-api",
    "checkout-web",
    "search-indexer",
    "search-api",
    "billing-api",
    "billing-worker",
    "ledger-db",
    "auth-service",
    "session-cache",
    "pages-cache",
    "email-sender",
    "sms-gateway",
    "kafka-main",
    "kafka-audit",
    "redis-main",
    "redis-queue",
    "postgres-main",
    "postgres-replica",
    "web-frontend",
    "mobile-bff",
    "recommendations",
    "inventory-api",
    "inventory-db",
    "shipping-api",
    "tax-service",
    "fraud-model",
    "feature-flags",
    "grafana",
    "prometheus",
    "alertmanager",
    "vault",
    "consul",
    "nginx-edge",
    "cdn-purger",
    "image-resizer",
    "pdf-renderer",
    "export-worker",
    "import-worker",
    "notifications-api",
    "chat-gateway",
    "reporting-etl",
    "warehouse-loader",
    "airflow",
    "jenkins",
    "argocd",
    "gitlab-runner",
    "sentry",
    "elasticsearch",
    "kibana",
    "logstash",
    "metrics-gateway",
    "rate-limiter",
    "geo-ip",
    "currency-rates",
    "loyalty-api",
]
ENVS = ["prod", "staging", "dev", "qa", "sandbox"]
TEAMS = [
    "payments",
    "checkout",
    "search",
    "billing",
    "platform",
    "data",
    "security",
    "mobile",
    "growth",
    "infra",
]
TOOLS = [
    "restart_service",
    "scale",
    "flush_cache",
    "deploy",
    "rollback",
    "rotate_keys",
    "drain",
    "purge_cdn",
]
ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"]
REASONS = [
    "because writes were lost the last time it restarted under load",
    "since the queue backs up and customers see timeouts",
    "after the incident where the replica fell behind for an hour",
    "because finance needs the ledger consistent at month end",
    "so that on-call is awake if the migration stalls",
    "because the cache warm-up takes twenty minutes",
    "as the vendor rate limits us during business hours",
    "since the canary caught a memory leak last week",
    "because the load balancer drains connections slowly",
    "to keep the error budget for the quarter",
]
WHENS = [
    "only at night",
    "never on fridays",
    "after draining the queue",
    "in staging first",
    "with two approvers",
    "during the maintenance window",
    "one replica at a time",
    "only after a backup",
]
QUERIES = [
    "restart {s} in {e}",
    "please restart {s} in {e}, it is stuck",
    "scale {s} to {n} replicas in {e}",
    "who owns {s}?",
    "rollback the last deploy of {s} in {e}",
    "flush the {c} cache",
    "why do we drain the queue before restarting {s}",
    "deploy {s} to {e} now",
    "rotate the keys for {s}",
    "is {s} healthy in {e}",
]
CACHES = ["sessions", "pages", "search", "cdn"]
EXPIRY = {
    FactKind.TASK: timedelta(days=14),
    FactKind.PREFERENCE: timedelta(days=180),
    FactKind.PROFILE: timedelta(days=365),
    FactKind.DECISION: timedelta(days=365),
}


@dataclass
class Generator:
    """Facts as Warden would have stored them, in time order, with deterministic content."""

    rng: random.Random = field(default_factory=lambda: random.Random(42))
    next_id: int = 1
    current: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    def at(self, n: int) -> datetime:
        return START + SPAN * (n / SIZES[-1])

    def chunk(self, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The next `count` facts, and the closing of earlier facts they supersede."""
        rows: list[dict[str, Any]] = []
        closes: list[dict[str, Any]] = []
        pending: dict[int, dict[str, Any]] = {}
        for _ in range(count):
            row = self._one(self.next_id)
            if row["slot"] is not None:
                key = (row["scope"], row["scope_id"], row["subject"], row["slot"])
                old = self.current.get(key)
                if old is not None:
                    if old in pending:
                        pending[old]["valid_to"] = row["valid_from"]
                        pending[old]["superseded_by"] = row["id"]
                    else:
                        closes.append({"b_id": old, "b_to": row["valid_from"], "b_by": row["id"]})
                self.current[key] = row["id"]
            pending[row["id"]] = row
            rows.append(row)
            self.next_id += 1
        return rows, closes

    def _one(self, n: int) -> dict[str, Any]:
        r = self.rng
        s, e = r.choice(SERVICES), r.choice(ENVS)
        user, channel = r.choice(USERS), r.choice(CHANNELS)
        name = FIRST[USERS.index(user) % len(FIRST)]
        roll = r.random()
        slot: str | None
        if roll < 0.22:  # who someone is
            kind, scope, scope_id = FactKind.PROFILE, "user", user
            slot = r.choice(["team", "timezone", "role"])
            subject = name + user[-3:]
            text_ = {
                "team": f"{name} is on the {r.choice(TEAMS)} team",
                "timezone": f"{name} works from {r.choice(ZONES)}",
                "role": f"{name} is the on-call engineer for {s}",
            }[slot]
        elif roll < 0.45:  # how someone wants things done
            kind, scope, scope_id = FactKind.PREFERENCE, "user", user
            slot = r.choice(["deploy window", "notifications", "approvals", "environment"])
            subject = s
            text_ = r.choice(
                [
                    f"{name} prefers to {r.choice(TOOLS).replace('_', ' ')} {s} {r.choice(WHENS)}",
                    f"{name} wants a DM when {s} changes in {e}",
                    f"{name} prefers to try {s} changes in {e} first",
                ]
            )
        elif roll < 0.75:  # what a channel decided, and why
            kind, scope, scope_id, slot = FactKind.DECISION, "channel", channel, None
            subject = s
            text_ = f"We {r.choice(TOOLS).replace('_', ' ')} {s} in {e} {r.choice(WHENS)} " + (
                r.choice(REASONS)
            )
        elif roll < 0.90:  # work under way
            kind, scope, scope_id, slot = FactKind.TASK, "channel", channel, None
            subject = s
            text_ = r.choice(
                [
                    f"follow up: {r.choice(TOOLS).replace('_', ' ')} {s} in {e} after the sale",
                    f"check {s} latency in {e} tomorrow morning",
                    f"{name} is migrating {s} to the new cluster",
                ]
            )
        else:  # what everyone should know about a service
            scope, scope_id = "workspace", ""
            if r.random() < 0.6:
                kind = FactKind.PROFILE
                slot = r.choice(["owner", "runbook", "escalation"])
                subject = s
                text_ = {
                    "owner": f"{s} is owned by the {r.choice(TEAMS)} team",
                    "runbook": f"the runbook for {s} is {r.choice(TOOLS)} with env={e}",
                    "escalation": f"escalate {s} incidents to {name}",
                }[slot]
            else:
                kind, slot, subject = FactKind.DECISION, None, s
                text_ = f"Workspace rule: {r.choice(TOOLS).replace('_', ' ')} {s} " + (
                    f"{r.choice(WHENS)} {r.choice(REASONS)}"
                )
        at = self.at(n)
        return {
            "id": n,
            "kind": kind.value,
            "scope": scope,
            "scope_id": scope_id,
            "subject": subject,
            "slot": slot,
            "text": text_,
            "request_id": f"r{n:08d}",
            "channel": channel,
            "message_ts": f"{1_760_000_000 + n}.000100",
            "author": user,
            "action_id": None,
            "source": "person",
            "valid_from": at,
            "valid_to": None,
            "expires_at": at + EXPIRY[kind],
            "superseded_by": None,
            "digest": fact_digest(text_),
            "created_at": at,
        }


def fill(db: Database, gen: Generator, count: int) -> float:
    """Insert `count` more facts in bulk (one transaction); seconds taken."""
    t0 = time.perf_counter()
    rows, closes = gen.chunk(count)
    table = Fact.__table__  # type: ignore[attr-defined]
    with db.engine.begin() as conn:
        if closes:  # close superseded facts first: one current fact per slot at all times
            conn.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(valid_to=bindparam("b_to"), superseded_by=bindparam("b_by")),
                closes,
            )
        for i in range(0, len(rows), 5000):
            conn.execute(insert(table), rows[i : i + 5000])
        if not db.is_sqlite:
            conn.execute(text("SELECT setval('fact_id_seq', (SELECT max(id) FROM fact))"))
    if not db.is_sqlite:
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE fact"))
            conn.commit()
    return time.perf_counter() - t0


def reset_postgres(url: str) -> None:
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def queries(rng: random.Random, n: int) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    for _ in range(n):
        q = rng.choice(QUERIES).format(
            s=rng.choice(SERVICES), e=rng.choice(ENVS), n=rng.randint(2, 9), c=rng.choice(CACHES)
        )
        yield q, [("user", rng.choice(USERS)), ("channel", rng.choice(CHANNELS)), ("workspace", "")]


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ms),
        "p50_ms": round(pct(0.50), 3),
        "p95_ms": round(pct(0.95), 3),
        "p99_ms": round(pct(0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ordered[-1], 3),
    }


def timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1000


def measure(store: Store, now: datetime, n: int, seed: int) -> dict[str, Any]:
    work = list(queries(random.Random(seed), n))
    hits: list[int] = []

    def search(q: str, scopes: list[tuple[str, str]]) -> None:
        hits.append(len(store.search_facts(q, scopes, None, now, 10)))

    for q, scopes in work[:20]:  # warm the caches and the connection pool
        search(q, scopes)
    hits.clear()
    sequential = [timed(lambda q=q, s=scopes: search(q, s)) for q, scopes in work]

    lock = threading.Lock()
    concurrent: list[float] = []

    def worker(part: list[tuple[str, list[tuple[str, str]]]]) -> None:
        mine = [timed(lambda q=q, s=scopes: search(q, s)) for q, scopes in part]
        with lock:
            concurrent.extend(mine)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, [work[i::THREADS] for i in range(THREADS)]))
    wall = time.perf_counter() - t0

    recent = [
        timed(lambda s=scopes: store.search_facts("", s, None, now, 10))
        for _, scopes in work[: n // 2]
    ]
    rng = random.Random(seed + 1)
    about = [
        timed(lambda s=scopes: store.decisions_about([rng.choice(SERVICES)], s, now, 3))
        for _, scopes in work[: n // 2]
    ]
    return {
        "search_sequential": summary(sequential),
        "search_concurrent": {**summary(concurrent), "queries_per_s": round(len(work) / wall, 1)},
        "search_empty_query": summary(recent),
        "decisions_about": summary(about),
        "mean_hits": round(statistics.fmean(hits), 2),
    }


def run(url: str, sizes: tuple[int, ...], n: int) -> dict[str, Any]:
    db = Database(url)
    db.upgrade()
    store = Store(db)
    gen = Generator()
    out: dict[str, Any] = {}
    try:
        for size in sizes:
            seconds = fill(db, gen, size - (gen.next_id - 1))
            now = gen.at(gen.next_id - 1) + timedelta(hours=1)
            with db.read() as s:
                table = Fact.__table__  # type: ignore[attr-defined]
                current = s.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.valid_to.is_(None), table.c.expires_at > now)
                ).scalar_one()
            figures = measure(store, now, n, seed=size)
            out[str(size)] = {"fill_s": round(seconds, 2), "current_facts": current, **figures}
            seq, conc = figures["search_sequential"], figures["search_concurrent"]
            print(
                f"  {size:>7,} facts ({current:,} current, fill {seconds:.1f} s): search p50 "
                f"{seq['p50_ms']:.2f} ms / p95 {seq['p95_ms']:.2f} ms one at a time; "
                f"p50 {conc['p50_ms']:.2f} / p95 {conc['p95_ms']:.2f} ms from {THREADS} threads "
                f"({conc['queries_per_s']:.0f} q/s); empty query p50 "
                f"{figures['search_empty_query']['p50_ms']:.2f} ms; decisions_about p50 "
                f"{figures['decisions_about']['p50_ms']:.2f} ms; {figures['mean_hits']} hits",
                flush=True,
            )
    finally:
        db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (its schema is DROPPED)")
    parser.add_argument("--queries", type=int, default=400, help="timed searches per size")
    parser.add_argument("--quick", action="store_true", help="1 k and 10 k facts, 100 queries")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results-memory.json")))
    args = parser.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    n = 100 if args.quick else args.queries
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # Other work on the machine inflates every figure: compare with this.
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "threads": THREADS,
        "queries_per_size": n,
        "target_p50_ms": TARGET_P50_MS,
    }
    missed: list[str] = []
    for name in ("sqlite", "postgresql"):
        if args.db not in (name, "both"):
            continue
        print(f"{name}:", flush=True)
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results[name] = run(f"sqlite:///{Path(tmp) / 'memory.db'}", sizes, n)
        else:
            reset_postgres(args.pg)
            results[name] = run(args.pg, sizes, n)
        biggest = results[name][str(sizes[-1])]
        for shape in ("search_sequential", "search_concurrent"):
            if biggest[shape]["p50_ms"] > TARGET_P50_MS:
                missed.append(f"{name} {shape} p50 at {sizes[-1]:,}")
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["missed"] = missed
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("targets missed: " + ", ".join(missed) if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
