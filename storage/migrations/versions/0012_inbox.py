"""the inbox: requests from Slack stored before they are acknowledged

`inbox` holds each event and slash command as the signed body Slack sent, written (many
at once, in one transaction) before Warden answers Slack's HTTP request, then handed to Bolt
by the replica that stored it and marked done. `key` (the event id, or the command's trigger
id) is unique, so a retry or replay of the same delivery is stored once; `owner` and
`lease_until` let another replica take over the entries of one that died. Nothing existing
needs to change.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", AutoString(length=100), nullable=False),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("content_type", AutoString(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", UTC(), nullable=False),
        sa.Column("owner", AutoString(length=64), nullable=True),
        sa.Column("lease_until", UTC(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_inbox_open", "inbox", ["done_at", "lease_until"])
    op.create_index(op.f("ix_inbox_received_at"), "inbox", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_inbox_received_at"), table_name="inbox")
    op.drop_index("ix_inbox_open", table_name="inbox")
    op.drop_table("inbox")
