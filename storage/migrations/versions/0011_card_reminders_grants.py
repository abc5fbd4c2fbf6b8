"""card reminders, escalation, break glass and 30-minute grants

`action` gains what keeps a waiting card in people's sight: `reminded_at` and
`reminded_users` (the approvers nudged by DM once `gate.remind_after` passed) and
`escalated_at` (posted to the admin channel once `gate.escalate_after` passed), each set once
by the conditional update that decides which replica sends it; and break glass —
`break_glass_by` / `break_glass_reason` (an admin ran a high-risk action alone, with a
reason) and `acknowledged_by` / `acknowledged_at` (the approver who reviewed it), indexed so
the unreviewed ones are found at once. `approval_grant` holds approvers' "approve identical
calls for 30 min" (the call's tool, a keyed hash of its real arguments, its tier and policy
version, and until when); `approval.via_grant` marks an approval a grant gave. Existing rows
need nothing: no card was reminded, escalated or broken into before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "approval_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approver", AutoString(length=32), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=False),
        sa.Column("tool", AutoString(length=64), nullable=False),
        sa.Column("args_digest", AutoString(length=64), nullable=False),
        sa.Column("risk", AutoString(length=16), nullable=False),
        sa.Column("policy_version", AutoString(length=32), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("until", UTC(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["action.id"]),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_approval_grant_call", "approval_grant", ["tool", "args_digest", "until"])
    # Plain ADD COLUMN (no batch rebuild): rebuilding `action` or `approval` would drop
    # tables other rows reference while foreign keys are enforced on SQLite.
    for column in (
        sa.Column("reminded_at", UTC(), nullable=True),
        sa.Column("reminded_users", sa.Text(), nullable=True),
        sa.Column("escalated_at", UTC(), nullable=True),
        sa.Column("break_glass_by", AutoString(length=32), nullable=True),
        sa.Column("break_glass_reason", sa.Text(), nullable=True),
        sa.Column("acknowledged_by", AutoString(length=32), nullable=True),
        sa.Column("acknowledged_at", UTC(), nullable=True),
    ):
        op.add_column("action", column)
    op.create_index("ix_action_break_glass", "action", ["break_glass_by", "acknowledged_by"])
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column's foreign key only inline (no ALTER … ADD CONSTRAINT).
        op.execute(
            "ALTER TABLE approval ADD COLUMN via_grant INTEGER REFERENCES approval_grant (id)"
        )
    else:
        op.add_column(
            "approval",
            sa.Column("via_grant", sa.Integer(), sa.ForeignKey("approval_grant.id"), nullable=True),
        )


def downgrade() -> None:
    op.drop_index("ix_action_break_glass", table_name="action")
    # `approval` is referenced by nothing, so a batch rebuild may drop its column (SQLite
    # cannot drop a column that has a REFERENCES clause in place); `action`'s go one by one.
    with op.batch_alter_table("approval") as batch_op:
        batch_op.drop_column("via_grant")
    for table, column in (
        ("action", "acknowledged_at"),
        ("action", "acknowledged_by"),
        ("action", "break_glass_reason"),
        ("action", "break_glass_by"),
        ("action", "escalated_at"),
        ("action", "reminded_users"),
        ("action", "reminded_at"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_index("ix_approval_grant_call", table_name="approval_grant")
    op.drop_table("approval_grant")
