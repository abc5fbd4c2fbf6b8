"""incidents

`incident` holds the incidents Warden declared (`storage.models.Incident`): unique on the
declaring action, so a retried declaration finds its row (stored before the channel is
created) and the channel name it chose; `next_reminder_at`, whose conditional update
decides which replica reminds the lead to post a status update. `incident_event` is each
incident's timeline, unique on (action, kind) so a retried call writes its entry once. Both
keep their ids for good (AUTOINCREMENT on SQLite): people type incident numbers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", AutoString(length=8), nullable=False),
        sa.Column("status", AutoString(length=16), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("channel_name", AutoString(length=80), nullable=False),
        sa.Column("channel", AutoString(length=32), nullable=True),
        sa.Column("lead", AutoString(length=32), nullable=False),
        sa.Column("comms", AutoString(length=32), nullable=True),
        sa.Column("created_by", AutoString(length=32), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=False),
        sa.Column("declared_at", UTC(), nullable=False),
        sa.Column("resolved_at", UTC(), nullable=True),
        sa.Column("resolved_by_action", AutoString(length=32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("last_update_at", UTC(), nullable=False),
        sa.Column("next_reminder_at", UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", name="uq_incident_action"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incident_status", "incident", ["status"])
    op.create_index("ix_incident_next_reminder", "incident", ["next_reminder_at"])
    op.create_index("ix_incident_channel", "incident", ["channel"])
    op.create_table(
        "incident_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC(), nullable=False),
        sa.Column("kind", AutoString(length=24), nullable=False),
        sa.Column("author", AutoString(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", "kind", name="uq_incident_event_action_kind"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incident_event_incident_at", "incident_event", ["incident_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_incident_event_incident_at", table_name="incident_event")
    op.drop_table("incident_event")
    op.drop_index("ix_incident_channel", table_name="incident")
    op.drop_index("ix_incident_next_reminder", table_name="incident")
    op.drop_index("ix_incident_status", table_name="incident")
    op.drop_table("incident")
