"""scoped pause

`pause_scope` holds scoped pauses (`storage.models.PauseScope`): one tool, one channel, or a
risk tier and those above (`tiers`, e.g. ",high,critical,", matched against an action's risk
by the claim's guard), who paused it, why, when it ends by itself (`until`) and when and by
whom it ended. A partial unique index keeps at most one active scope per (kind, value).
`control` gains `until`: when a timed global pause ends by itself.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime
ACTIVE_SCOPE = "ended_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "pause_scope",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=8), nullable=False),
        sa.Column("value", AutoString(length=64), nullable=False),
        sa.Column("tiers", AutoString(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("paused_by", AutoString(length=32), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.Column("until", UTC(), nullable=True),
        sa.Column("ended_at", UTC(), nullable=True),
        sa.Column("ended_by", AutoString(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_pause_scope_active",
        "pause_scope",
        ["kind", "value"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_SCOPE),
        postgresql_where=sa.text(ACTIVE_SCOPE),
    )
    op.create_index("ix_pause_scope_ended_until", "pause_scope", ["ended_at", "until"])
    op.add_column("control", sa.Column("until", UTC(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), as 0009 does.
    op.drop_column("control", "until")
    op.drop_index("ix_pause_scope_ended_until", table_name="pause_scope")
    op.drop_index("uq_pause_scope_active", table_name="pause_scope")
    op.drop_table("pause_scope")
