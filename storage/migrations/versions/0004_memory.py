"""memory: typed facts with validity intervals and full-text search; personal-data sealing

`fact` holds Warden's memory (see `storage.models.Fact`): one row per fact, closed rather than
deleted when a newer fact for the same slot replaces it, with a partial unique index that
keeps one current fact per (scope, scope_id, subject, slot). Full-text search is per dialect:

* SQLite: `fact_fts`, a contentless FTS5 table (`content=''`: it stores the index only, never
  a second copy of the text) of the current facts, kept in sync by triggers on `fact`.
  Besides the searchable columns it indexes `scope_key`, `hex(scope || ':' || scope_id)` —
  one token per scope — so a search narrows to the asker's visible scopes inside the
  full-text index itself instead of ranking every match in the workspace. Its tokenizer
  (porter stemming over unicode61) matches PostgreSQL's `english` configuration closely.
* PostgreSQL: `fact.tsv`, a stored generated `tsvector` (subject weight A, slot B, text C,
  `english` configuration: stemming, so "restarted" finds "restart", and the same stop words
  the query builder drops; plus one unranked scope lexeme, as in FTS5), with a GIN index of
  the current facts. `.`, `_`, `/`, `:` and `@` are read as spaces so "db01.prod" and
  "restart_service" split into words as FTS5 splits them.

A later migration that rebuilds `fact` with `batch_alter_table` on SQLite must recreate the
triggers below. `request.pii_sealed` holds a request's sealed placeholder → value mapping;
`outbox.request_id` links a message to its request.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime

CURRENT_SLOT = "valid_to IS NULL AND slot IS NOT NULL"

# The index holds current facts only (valid_to IS NULL): superseded facts stay in `fact` for
# their history but are never searched, so a closed fact leaves the index when it is closed.
# A contentless table's 'delete' must name exactly what was indexed, hence the WHERE clauses.
SQLITE_FTS = [
    """
    CREATE VIRTUAL TABLE fact_fts USING fts5(
        scope_key, subject, slot, text,
        content='', tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER fact_fts_insert AFTER INSERT ON fact WHEN new.valid_to IS NULL BEGIN
        INSERT INTO fact_fts (rowid, scope_key, subject, slot, text)
        VALUES (new.id, hex(new.scope || ':' || new.scope_id), new.subject,
                coalesce(new.slot, ''), new.text);
    END
    """,
    """
    CREATE TRIGGER fact_fts_delete AFTER DELETE ON fact WHEN old.valid_to IS NULL BEGIN
        INSERT INTO fact_fts (fact_fts, rowid, scope_key, subject, slot, text)
        VALUES ('delete', old.id, hex(old.scope || ':' || old.scope_id), old.subject,
                coalesce(old.slot, ''), old.text);
    END
    """,
    """
    CREATE TRIGGER fact_fts_update
    AFTER UPDATE OF scope, scope_id, subject, slot, text, valid_to ON fact BEGIN
        INSERT INTO fact_fts (fact_fts, rowid, scope_key, subject, slot, text)
        SELECT 'delete', old.id, hex(old.scope || ':' || old.scope_id), old.subject,
               coalesce(old.slot, ''), old.text
        WHERE old.valid_to IS NULL;
        INSERT INTO fact_fts (rowid, scope_key, subject, slot, text)
        SELECT new.id, hex(new.scope || ':' || new.scope_id), new.subject,
               coalesce(new.slot, ''), new.text
        WHERE new.valid_to IS NULL;
    END
    """,
]

# `scope<md5(scope:scope_id)>` (weight D, never ranked) lets the GIN index narrow a search to
# the asker's scopes, as `scope_key` does in FTS5; the index covers current facts only. No
# fast-update pending list: facts are written one at a time and searched often, and every
# search would otherwise scan the unmerged entries until the next vacuum.
PG_TSV = """
    ALTER TABLE fact ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', 'scope' || md5(scope || ':' || scope_id)), 'D')
        || setweight(to_tsvector('english', translate(subject, '._/:@', '     ')), 'A')
        || setweight(to_tsvector('english', translate(coalesce(slot, ''), '._/:@', '     ')), 'B')
        || setweight(to_tsvector('english', translate(text, '._/:@', '     ')), 'C')
    ) STORED
"""
PG_GIN = (
    "CREATE INDEX ix_fact_tsv ON fact USING gin (tsv) WITH (fastupdate = off) "
    "WHERE valid_to IS NULL"
)


def upgrade() -> None:
    op.create_table(
        "fact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("scope", AutoString(length=16), nullable=False),
        sa.Column("scope_id", AutoString(length=32), nullable=False),
        sa.Column("subject", AutoString(length=64), nullable=False),
        sa.Column("slot", AutoString(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("request_id", AutoString(length=32), nullable=True),
        sa.Column("channel", AutoString(length=32), nullable=False),
        sa.Column("message_ts", AutoString(length=32), nullable=False),
        sa.Column("author", AutoString(length=32), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=True),
        sa.Column("source", AutoString(length=16), nullable=False),
        sa.Column("valid_from", UTC(), nullable=False),
        sa.Column("valid_to", UTC(), nullable=True),
        sa.Column("expires_at", UTC(), nullable=False),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.Column("digest", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_fact_scope_recent", "fact", ["scope", "scope_id", "valid_from"])
    op.create_index(
        "ix_fact_scope_kind", "fact", ["scope", "scope_id", "kind", "valid_to", "expires_at"]
    )
    op.create_index("ix_fact_subject", "fact", ["subject", "kind", "valid_from"])
    op.create_index("ix_fact_expires_at", "fact", ["expires_at"])
    op.create_index("ix_fact_valid_to", "fact", ["valid_to"])
    op.create_index(
        "uq_fact_current_slot",
        "fact",
        ["scope", "scope_id", "subject", "slot"],
        unique=True,
        sqlite_where=sa.text(CURRENT_SLOT),
        postgresql_where=sa.text(CURRENT_SLOT),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(PG_TSV)
        op.execute(PG_GIN)

    with op.batch_alter_table("request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pii_sealed", sa.Text(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", AutoString(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch rebuild of `request` would drop
    # a table that `action` rows reference while foreign keys are enforced.
    op.drop_index("ix_outbox_request_id", table_name="outbox")
    op.execute("ALTER TABLE outbox DROP COLUMN request_id")
    op.execute("ALTER TABLE request DROP COLUMN pii_sealed")
    if op.get_bind().dialect.name == "sqlite":
        for name in ("fact_fts_update", "fact_fts_delete", "fact_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS fact_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_fact_tsv")
    for name in (
        "uq_fact_current_slot",
        "ix_fact_valid_to",
        "ix_fact_expires_at",
        "ix_fact_subject",
        "ix_fact_scope_kind",
        "ix_fact_scope_recent",
    ):
        op.drop_index(name, table_name="fact")
    op.drop_table("fact")
