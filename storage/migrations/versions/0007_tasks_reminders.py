"""tasks and reminders

`task` holds the to-dos people keep in channels (`storage.models.Task`): unique on the action
that created it, so a retried create finds its row, with the action that last assigned or
completed it, so a retry repeats its answer and an undo reverses only its own change.
`reminder` holds scheduled messages (`storage.models.Reminder`): a cron expression and a time
zone, or a one-off time, and `next_at`, the next occurrence in UTC, whose conditional update
decides which replica posts it. Both keep their ids for good (AUTOINCREMENT on SQLite):
people type them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("channel", AutoString(length=32), nullable=False),
        sa.Column("created_by", AutoString(length=32), nullable=False),
        sa.Column("assignee", AutoString(length=32), nullable=True),
        sa.Column("status", AutoString(length=16), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("action_id", AutoString(length=32), nullable=False),
        sa.Column("changed_by_action", AutoString(length=32), nullable=True),
        sa.Column("previous_assignee", AutoString(length=32), nullable=True),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("completed_at", UTC(), nullable=True),
        sa.Column("completed_by", AutoString(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", name="uq_task_action"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_channel_status", "task", ["channel", "status"])
    op.create_index("ix_task_assignee_status", "task", ["assignee", "status"])
    op.create_index("ix_task_created_by_status", "task", ["created_by", "status"])
    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", AutoString(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("cron", AutoString(length=64), nullable=True),
        sa.Column("timezone", AutoString(length=64), nullable=False),
        sa.Column("at", UTC(), nullable=True),
        sa.Column("next_at", UTC(), nullable=True),
        sa.Column("created_by", AutoString(length=32), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("cancelled_at", UTC(), nullable=True),
        sa.Column("cancelled_by", AutoString(length=32), nullable=True),
        sa.Column("last_fired_at", UTC(), nullable=True),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", name="uq_reminder_action"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reminder_next_at", "reminder", ["next_at"])
    op.create_index("ix_reminder_channel", "reminder", ["channel"])


def downgrade() -> None:
    op.drop_index("ix_reminder_channel", table_name="reminder")
    op.drop_index("ix_reminder_next_at", table_name="reminder")
    op.drop_table("reminder")
    op.drop_index("ix_task_created_by_status", table_name="task")
    op.drop_index("ix_task_assignee_status", table_name="task")
    op.drop_index("ix_task_channel_status", table_name="task")
    op.drop_table("task")
