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


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(database_url: str) -> None:
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
                "0005"
            ]
            assert s.execute(text("SELECT count(*) FROM audit_head")).scalar_one() == 1
            assert s.execute(text("SELECT count(*) FROM control")).scalar_one() == 1
    finally:
        db.dispose()
