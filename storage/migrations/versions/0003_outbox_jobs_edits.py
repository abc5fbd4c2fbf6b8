"""outbox, once-per-deployment jobs, one request per Slack message, edit authorship and taint

`outbox` holds the Slack messages Warden owes (written with the change that caused them);
`job_run` lets one replica claim a scheduled job's period; `request` gets a unique
(channel, message_ts) so an edited message (same ts, new event id) never starts a second
request, and a unique event_id so a retried event is refused by the same insert; `action`
records who authored the current arguments (`edited_by`), why a call needs a click despite
`auto` (`taint`) and Warden's own note on the result (`result_note`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("channel", AutoString(length=32), nullable=False),
        sa.Column("thread_ts", AutoString(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("action_id", AutoString(length=32), nullable=True),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("next_at", UTC(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("owner", AutoString(length=64), nullable=True),
        sa.Column("lease_until", UTC(), nullable=True),
        sa.Column("delivered_at", UTC(), nullable=True),
        sa.Column("last_error", AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["delivered_at", "next_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_action_id"), ["action_id"], unique=False)
    op.create_table(
        "job_run",
        sa.Column("name", AutoString(length=64), nullable=False),
        sa.Column("period", AutoString(length=32), nullable=False),
        sa.Column("owner", AutoString(length=64), nullable=False),
        sa.Column("ran_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("name", "period"),
    )
    with op.batch_alter_table("request", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_request_message", ["channel", "message_ts"])
        batch_op.create_unique_constraint("uq_request_event", ["event_id"])
        batch_op.create_index("ix_request_requester_status", ["requester", "status"])
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_by", AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("taint", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("result_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.drop_column("result_note")
        batch_op.drop_column("taint")
        batch_op.drop_column("edited_by")
    with op.batch_alter_table("request", schema=None) as batch_op:
        batch_op.drop_index("ix_request_requester_status")
        batch_op.drop_constraint("uq_request_event", type_="unique")
        batch_op.drop_constraint("uq_request_message", type_="unique")
    op.drop_table("job_run")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_action_id"))
        batch_op.drop_index("ix_outbox_due")
    op.drop_table("outbox")
