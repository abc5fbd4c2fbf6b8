"""Alembic environment: runs against the engine handed over by `Database.upgrade()`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    from sqlmodel import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///warden.db")

# Replicas starting together on a fresh database would all create the tables at once; they
# must take turns, the later ones finding the schema current. PostgreSQL: a transaction-scoped
# advisory lock. SQLite: the whole run is one transaction (Alembic's default for SQLite is
# none, which let two replicas both read an old revision and apply it twice), begun with
# `BEGIN IMMEDIATE` by the engine, so the revision is read under the write lock.
MIGRATION_LOCK = 0x57A2D3  # any constant shared by every Warden

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
    connection.commit()
