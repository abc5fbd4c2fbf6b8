"""feedback and metrics: lifecycle times on actions, outcome checks, feedback, alert state

`action` gains the times metrics read (`decided_at`, `started_at`, `finished_at`, set by
`Store.transition`), a runbook's outcome check (`verify_status`, `verify_at`,
`verify_note`), `ix_action_card` (a reaction names its card's message) and
`ix_action_tool_created` (unusual-usage counts); `feedback` keeps one 👍 / 👎 per
(action, person); `alert_state` keeps when each alert last fired, so its cool-down holds
across replicas.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime

ACTION_COLUMNS = (
    "decided_at",
    "started_at",
    "finished_at",
    "verify_status",
    "verify_at",
    "verify_note",
)


def upgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_at", UTC(), nullable=True))
        batch_op.add_column(sa.Column("started_at", UTC(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", UTC(), nullable=True))
        batch_op.add_column(sa.Column("verify_status", AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column("verify_at", UTC(), nullable=True))
        batch_op.add_column(sa.Column("verify_note", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_action_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_action_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_action_card", ["channel", "card_ts"], unique=False)
        batch_op.create_index("ix_action_tool_created", ["tool", "created_at"], unique=False)
    op.create_table(
        "feedback",
        sa.Column("action_id", AutoString(length=32), nullable=False),
        sa.Column("person", AutoString(length=32), nullable=False),
        sa.Column("vote", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", AutoString(length=16), nullable=False),
        sa.Column("tool", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("updated_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["action.id"]),
        sa.PrimaryKeyConstraint("action_id", "person"),
    )
    op.create_index(op.f("ix_feedback_tool"), "feedback", ["tool"], unique=False)
    op.create_index(op.f("ix_feedback_updated_at"), "feedback", ["updated_at"], unique=False)
    op.create_table(
        "alert_state",
        sa.Column("key", AutoString(length=128), nullable=False),
        sa.Column("fired_at", UTC(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("alert_state")
    op.drop_index(op.f("ix_feedback_updated_at"), table_name="feedback")
    op.drop_index(op.f("ix_feedback_tool"), table_name="feedback")
    op.drop_table("feedback")
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch rebuild of `action` would drop a
    # table that `approval` rows reference while foreign keys are enforced.
    op.drop_index("ix_action_tool_created", table_name="action")
    op.drop_index("ix_action_card", table_name="action")
    op.drop_index("ix_action_created_at", table_name="action")
    op.drop_index("ix_action_finished_at", table_name="action")
    for name in ACTION_COLUMNS:
        op.execute(f"ALTER TABLE action DROP COLUMN {name}")
