"""seed the singleton rows; instance heartbeats

`audit_head` (the chain's tip) and `control` (the kill switch) are single rows that used to be
created by whichever writer came first, which made the first concurrent writers on a fresh
PostgreSQL database fail on the primary key. They are seeded here instead (only where missing,
so existing databases keep their chain tip and pause state). `instance` lists running Warden
processes and their heartbeats, so work left `executing` by a dead process is found at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "instance",
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instance_heartbeat_at"), ["heartbeat_at"], unique=False
        )

    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, seq, hash) SELECT 1, 0, :genesis "
            "WHERE NOT EXISTS (SELECT 1 FROM audit_head WHERE id = 1)"
        ).bindparams(genesis=GENESIS)
    )
    control = sa.table(
        "control",
        sa.column("id", sa.Integer()),
        sa.column("paused", sa.Boolean()),
        sa.column("reason", sa.Text()),
        sa.column("changed_by", sa.String()),
        sa.column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    op.execute(
        control.insert().from_select(
            ["id", "paused", "reason", "changed_by", "changed_at"],
            sa.select(
                sa.literal(1),
                sa.false(),
                sa.literal(""),
                sa.literal(""),
                sa.literal(datetime.now(UTC), sqlmodel.sql.sqltypes.UTCDateTime()),
            ).where(~sa.exists().where(control.c.id == 1)),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_heartbeat_at"))
    op.drop_table("instance")
    # The seeded rows stay: they are valid data for 0001 too.
