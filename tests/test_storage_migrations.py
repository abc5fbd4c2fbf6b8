"""Replicas starting together on a fresh database all bring the schema up without errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from storage.db import Database

UPGRADE = (
    "import sys; from storage.db import Database; "
    "d = Database(sys.argv[1]); d.upgrade(); d.dispose()"
)


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(fresh_database_url: str) -> None:
    database_url = fresh_database_url
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, database_url],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert [rc for rc, _ in outcomes] == [0, 0, 0, 0], [err[-2000:] for _, err in outcomes]
    db = Database(database_url)
    try:
        with db.read() as s:
            assert s.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                "0013"
            ]
            assert s.execute(text("SELECT count(*) FROM audit_head")).scalar_one() == 1
            assert s.execute(text("SELECT count(*) FROM control")).scalar_one() == 1
    finally:
        db.dispose()


def test_the_migrations_build_exactly_the_models_schema(db: Database) -> None:
    """Every column, index and table the models declare is what the migrations created (the
    full-text index lives outside the models: FTS5 tables on SQLite, `fact.tsv` on PostgreSQL)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import storage.models  # noqa: F401  (registers every table)

    def ours(diff: object) -> bool:
        text_ = repr(diff)
        return not any(name in text_ for name in ("fact_fts", "'tsv'", "ix_fact_tsv"))

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = [d for d in compare_metadata(context, SQLModel.metadata) if ours(d)]
    assert diffs == []
