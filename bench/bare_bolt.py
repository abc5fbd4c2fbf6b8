"""The benchmark's floor: a sync slack-bolt App whose listeners do one INSERT and ack,
served by waitress with Warden's thread count, in its own process (as `warden serve` is).

    python bench/bare_bolt.py DATABASE_URL PORT   (SLACK_API_URL, SLACK_SIGNING_SECRET set)

Its engine is what a careful app would set up: on SQLite WAL, `synchronous=NORMAL`,
`BEGIN IMMEDIATE` and SQLite's own busy handler (30 s), on PostgreSQL a pool as large as
Warden's. (Warden's writers take turns in-process and poll for the lock across processes;
that is Warden's work, not the baseline's.)"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, event
from sqlalchemy import insert as sa_insert
from sqlalchemy.engine import Engine
from waitress import serve

from handlers.http import make_server
from handlers.slack_client import make_web_client
from storage.db import normalise_url
from storage.models import utcnow

HTTP_THREADS = int(inspect.signature(make_server).parameters["threads"].default)
TABLE = Table(
    "bare_ack",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32)),
    Column("user_id", String(32)),
    Column("body", String(8000)),
    Column("at", DateTime(timezone=True)),
)


def engine_for(url: str) -> Engine:
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=64, max_overflow=16)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=64
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def main(url: str, port: int) -> None:
    engine = engine_for(url)
    TABLE.metadata.create_all(engine)

    def insert(kind: str, user: Any, body: Any) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa_insert(TABLE).values(
                    kind=kind, user_id=str(user)[:32], body=str(body)[:8000], at=utcnow()
                )
            )

    app = App(
        client=make_web_client(os.environ["SLACK_BOT_TOKEN"], os.environ["SLACK_API_URL"]),
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
    )

    @app.event("app_mention")
    def on_mention(ack: Ack, event: dict[str, Any]) -> None:
        insert("mention", event.get("user"), event.get("text"))
        ack()

    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        insert(str(command.get("command")), command.get("user_id"), command.get("text"))
        ack(text="ok")

    for name in ("/pause", "/resume", "/warden"):
        app.command(name)(on_command)

    serve(
        SlackRequestHandler(app, path="/slack/events"),
        host="127.0.0.1",
        port=port,
        threads=HTTP_THREADS,
        ident="bare",
        channel_timeout=30,
        _quiet=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
