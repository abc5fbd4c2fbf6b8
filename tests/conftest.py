"""Shared fixtures: databases (SQLite and PostgreSQL), policies, a recording chat.

Databases: every test that asks for `database_url` (or `db`) runs twice, on SQLite and on
PostgreSQL, each time on an empty database at the newest schema, with the singleton rows
(`control`, `audit_head`) as the migrations seed them. The schema is migrated once per test
session (per xdist worker): SQLite tests get a copy of a migrated file, PostgreSQL tests the
session's database emptied (TRUNCATE … RESTART IDENTITY, the seeded rows put back). A test
that changes the schema and leaves it changed (or at another revision) makes the next test
rebuild the database from scratch. Tests of the migrations themselves ask for
`fresh_database_url`: a database with no schema at all.

PostgreSQL: `WARDEN_TEST_PG_URL` (default: database "test" on 127.0.0.1). Under pytest-xdist
each worker uses its own database, the URL's with the worker id appended (`test_gw0`, …),
created when missing.

Hypothesis: the `ci` profile (the default) runs each property a quarter of the examples it
asks for (`examples(n)`); `WARDEN_HYPOTHESIS_PROFILE=thorough` runs all of them.
"""

from __future__ import annotations

import os
import shutil
import socketserver
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from hypothesis import settings
from psycopg import sql
from waitress.adjustments import Adjustments

import storage.db
from bot.errors import ChatRefused
from bot.policy import Policy, parse_policy
from storage.db import Database

pytest_plugins = ["tests.slack_fixtures"]

# -- Hypothesis ------------------------------------------------------------------------------

settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("thorough", deadline=None, print_blob=True, max_examples=400)
HYPOTHESIS_PROFILE = os.environ.get("WARDEN_HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(thorough: int) -> int:
    """How many examples a property runs: `thorough` under the thorough profile, a quarter of
    that (at least 10) under `ci`. Randomised either way, so CI runs keep exploring."""
    return thorough if HYPOTHESIS_PROFILE == "thorough" else max(10, thorough // 4)


# -- test servers ----------------------------------------------------------------------------

# Servers started by tests stop at once. Waitress (Warden's HTTP server) and http.server
# (devslack, the Anthropic stub) notice a shutdown only when their poll loop next wakes: every
# 1 s and 0.5 s by default, which made every Slack test's teardown wait 1.5 s for nothing.
# Shorter polls, in the test process only (a stop still joins the server's thread).
SERVER_POLL = 0.02
Adjustments.asyncore_loop_timeout = SERVER_POLL
socketserver.BaseServer.serve_forever.__defaults__ = (SERVER_POLL,)

PG_URL = os.environ.get("WARDEN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

# PostgreSQL connections: Warden keeps up to 64 (+16 overflow) per engine, sized for a
# production replica's threads. In the test process each engine gets a smaller pool (the
# extra ones still open on demand and close after use, up to PG_POOL_MAX), so two xdist
# workers racing a hundred threads stay well under the server's max_connections (100).
PG_POOL_SIZE, PG_POOL_MAX = 10, 30
_create_engine = storage.db.create_engine


def _bounded_engine(url: Any, **kwargs: Any) -> Any:
    if not str(url).startswith("sqlite"):
        kwargs["pool_size"] = min(kwargs.get("pool_size", 5), PG_POOL_SIZE)
        kwargs["max_overflow"] = PG_POOL_MAX - kwargs["pool_size"]
    return _create_engine(url, **kwargs)


storage.db.create_engine = _bounded_engine

REQUESTER, APPROVER, APPROVER2, ADMIN, STRANGER = (
    "U0REQ",
    "U0APPR1",
    "U0APPR2",
    "U0ADMIN",
    "U0STRANGER",
)
APPROVER3 = "U0APPR3"  # a third approver, so a critical call edited by an approver can pass


# -- databases -------------------------------------------------------------------------------

MIGRATIONS_HEAD = ScriptDirectory(
    str(Path(__file__).resolve().parents[1] / "storage" / "migrations")
).get_current_head()
# What of a database's schema a test could change and leave changed: tables, columns,
# defaults, indexes, constraints, triggers. Compared before a database is reused.
PG_SCHEMA = """
SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), '')) FROM (
  SELECT 'column ' || c.relname || '.' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
         || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS line
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
    AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT 'trigger ' || t.tgname || ' ' || t.tgrelid::regclass::text FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
) AS schema_lines
"""


def _pg_database_url(worker: str) -> str:
    """This test process's PostgreSQL database: PG_URL's own, or under xdist one per worker."""
    if worker in ("", "master"):
        return PG_URL
    base, _, name = PG_URL.rpartition("/")
    name = f"{name}_{worker}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{base}/{name}"


@dataclass
class PostgresDatabase:
    """The session's PostgreSQL database, migrated once and emptied before each test."""

    url: str
    schema: str = ""  # PG_SCHEMA's digest of the migrated schema
    tables: list[str] = field(default_factory=list)  # referencing tables before referenced
    sequences: list[tuple[str, int]] = field(default_factory=list)  # name, start value
    seeds: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)
    dirty: bool = True  # rebuild from scratch before the next test

    def blank(self) -> None:
        """No schema at all (what a brand-new database looks like)."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
        self.dirty = True

    def rebuild(self) -> None:
        """Migrate a blank database and note what the migrations left in it."""
        self.blank()
        database = Database(self.url)
        try:
            database.upgrade()
        finally:
            database.dispose()
        with psycopg.connect(self.url, connect_timeout=10) as conn:
            self.schema = str(_one(conn, PG_SCHEMA))
            tables = [
                str(r[0])
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version' ORDER BY tablename"
                )
            ]
            references = conn.execute(
                "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
            ).fetchall()
            self.tables = _referencing_first(tables, references)
            self.sequences = [
                (str(name), int(start))
                for name, start in conn.execute(
                    "SELECT quote_ident(sequencename), start_value FROM pg_sequences "
                    "WHERE schemaname = 'public'"
                )
            ]
            self.seeds = {}
            for table in self.tables:
                cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                rows = cur.fetchall()
                if rows:
                    self.seeds[table] = ([c.name for c in cur.description or ()], rows)
        self.dirty = False

    def empty(self) -> None:
        """Every row deleted, sequences restarted and the seeded rows put back, as a fresh
        migration leaves the database (the kill switch's `changed_at` is now, as it would be);
        rebuilt instead if a test left the schema changed or at another revision."""
        if not self.dirty:
            with psycopg.connect(self.url, connect_timeout=10) as conn:
                version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                if version == [(MIGRATIONS_HEAD,)] and _one(conn, PG_SCHEMA) == self.schema:
                    # DELETE, not TRUNCATE: a few times faster on tables this small.
                    for table in self.tables:
                        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
                    for name, start in self.sequences:
                        conn.execute("SELECT setval(%s, %s, false)", [name, start])
                    for table, (columns, rows) in reversed(self.seeds.items()):
                        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                            sql.Identifier(table),
                            sql.SQL(", ").join(map(sql.Identifier, columns)),
                            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                        )
                        conn.cursor().executemany(insert, rows)
                    conn.execute("UPDATE control SET changed_at = %s", [datetime.now(UTC)])
                    conn.commit()
                    return
        self.rebuild()


def _referencing_first(tables: list[str], references: list[tuple[str, str]]) -> list[str]:
    """`tables` ordered so that each comes before every table it references."""
    ordered: list[str] = []

    def visit(table: str, path: tuple[str, ...]) -> None:
        if table in ordered or table in path:
            return
        for child, parent in references:
            if parent == table and child != table:
                visit(child, (*path, table))
        ordered.append(table)

    for table in tables:
        visit(table, ())
    return ordered


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="session")
def postgres_database(xdist_worker: str) -> PostgresDatabase:
    return PostgresDatabase(_pg_database_url(xdist_worker))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "warden.db"
    database = Database(f"sqlite:///{path}")
    try:
        database.upgrade()
    finally:
        database.dispose()
    with sqlite3.connect(path) as conn:  # everything in the main file, nothing in a WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture(scope="session")
def xdist_worker(request: pytest.FixtureRequest) -> str:
    """The xdist worker running this session ("master" without xdist)."""
    return str(getattr(request.config, "workerinput", {}).get("workerid", "master"))


def empty_database(request: pytest.FixtureRequest, kind: str, directory: Path) -> str:
    """An empty database at the newest schema: a copy of the migrated SQLite file in
    `directory`, or the session's PostgreSQL database emptied."""
    if kind == "sqlite":
        path = directory / "warden.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE control SET changed_at = ?",
                [datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")],
            )
        conn.close()
        return f"sqlite:///{path}"
    postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
    postgres.empty()
    return postgres.url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the newest schema, on SQLite and on PostgreSQL."""
    return empty_database(request, request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema at all, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warden.db'}"
    postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
    postgres.blank()
    return postgres.url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def policy_data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    log = tmp_path / "runbook.log"
    data: dict[str, Any] = {
        "access": {
            "admins": [ADMIN],
            "approvers": [APPROVER, APPROVER2, REQUESTER, APPROVER3],
            "admin_channel": "C0OPS",
        },
        "gate": {
            "min_confidence": 0.8,
            "clarify_below": 0.5,
            "approval_ttl": "1h",
            "undo_window": "1h",
        },
        "tools": {"post_message": {"autonomy": "auto"}},
        "runbooks": {
            "restart_service": {
                "description": "Restart a service",
                "command": [
                    "sh",
                    "-c",
                    'echo "restart $0 $WARDEN_ACTION_ID" >> "$1"',
                    "{service}",
                    str(log),
                ],
                "undo": ["sh", "-c", 'echo "undo $0" >> "$1"', "{service}", str(log)],
                "dry_run": ["echo", "would restart {service}"],
                "risk": "high",
                "timeout": "10s",
                "params": {"service": {"pattern": "^[a-z0-9-]{1,40}$"}},
            },
            "scale": {
                "description": "Scale a service",
                "command": [
                    "sh",
                    "-c",
                    'echo "scale $0 $1" >> "$2"',
                    "{service}",
                    "{env}",
                    str(log),
                ],
                "dry_run": ["echo", "would scale {service} in {env}"],
                "risk": "medium",
                "params": {
                    "service": {"pattern": "^[a-z0-9-]{1,40}$"},
                    "env": {"choices": ["staging", "prod"], "risk_if": {"prod": "critical"}},
                },
            },
            "flush_cache": {
                "description": "Flush a cache",
                "command": ["sh", "-c", 'echo "flush $0" >> "$1"', "{name}", str(log)],
                "risk": "medium",
                "params": {"name": {"choices": ["sessions", "pages"]}},
            },
        },
        "aliases": {
            "restart {service}": {"runbook": "restart_service"},
            "scale {service} in {env}": {"runbook": "scale"},
            "flush {name}": {"runbook": "flush_cache"},
            "announce {text}": {"tool": "post_message", "args": {"channel": "C0GENERAL"}},
        },
        "workers": {"planners": 4, "executors": 4, "per_requester": 500},
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return parse_policy(policy_data(tmp_path))


class RecordingChat:
    """A `Chat` that keeps everything in memory (for bot-level tests with no Slack)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.posts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self._ts = 1000

    def _next(self) -> str:
        self._ts += 1
        return f"1700000000.{self._ts:06d}"

    def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        return self._post(channel, text, None, thread_ts, key)

    def post_card(self, channel: str, card: Any, thread_ts: str | None = None) -> str:
        return self._post(channel, card.summary, card, thread_ts)

    def _post(
        self, channel: str, text: str, card: Any, thread_ts: str | None, key: str | None = None
    ) -> str:
        with self.lock:
            ts = self._next()
            self.posts.append(
                {
                    "channel": channel,
                    "text": text,
                    "card": card,
                    "thread_ts": thread_ts,
                    "ts": ts,
                    "key": key,
                }
            )
            self.lock.notify_all()
            return ts

    def find_card(self, channel: str, thread_ts: str | None, action_id: str) -> str | None:
        with self.lock:
            return next(
                (
                    p["ts"]
                    for p in self.posts
                    if p["card"] is not None
                    and p["channel"] == channel
                    and p["card"].action_id == action_id
                ),
                None,
            )

    def find_message(self, channel: str, thread_ts: str | None, key: str) -> str | None:
        with self.lock:
            return next(
                (p["ts"] for p in self.posts if p["key"] == key and p["channel"] == channel),
                None,
            )

    def update_card(self, channel: str, ts: str, card: Any) -> None:
        with self.lock:
            self.updates.append({"channel": channel, "ts": ts, "text": card.summary, "card": card})
            self.lock.notify_all()

    def delete(self, channel: str, ts: str) -> None:
        pass

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        with self.lock:
            self.ephemerals.append({"channel": channel, "user": user, "text": text})
            self.lock.notify_all()

    def react(self, channel: str, ts: str, name: str) -> None:
        pass

    def unreact(self, channel: str, ts: str, name: str) -> None:
        pass

    def user_info(self, user: str) -> dict[str, str]:
        return {"id": user, "name": user.lower(), "real_name": "", "title": "", "tz": "UTC"}

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        pass

    # Channel operations (bot/channel_tools.py): bot-level tests change no channels, so each
    # is refused; tests/test_channel_tools.py runs them against devslack.
    def _no_channels(self, *_: Any, **__: Any) -> Any:
        raise ChatRefused("not_in_recording_chat")

    create_channel = find_channel = channel_info = _no_channels
    post_creation_note = creating_action = invite = kick = _no_channels
    set_topic = set_purpose = pin = unpin = archive = unarchive = _no_channels
    usergroup_members = _no_channels


@pytest.fixture
def chat() -> RecordingChat:
    return RecordingChat()


# -- pytest-xdist ----------------------------------------------------------------------------

# Modules whose tests share a module-scoped fixture too costly to start on every worker (one
# Chromium): under `--dist loadgroup` each runs on one worker.
ONE_WORKER_MODULES = {"test_browser.py": "chromium"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = ONE_WORKER_MODULES.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
