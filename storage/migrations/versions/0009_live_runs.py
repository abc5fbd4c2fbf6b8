"""live runs and Cancel

`action` gains `progress` (the last lines of a running command's output, rewritten every few
seconds while it runs, so any replica's outbox can bring its card up to date) and
`cancel_requested_by` / `cancel_requested_at` (who asked to stop the run, set once by a
conditional update: the replica running the command sees it and stops its process group).
The new status `cancelled` needs no schema change (`status` is a plain string).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTC = sqlmodel.sql.sqltypes.UTCDateTime

ACTION_COLUMNS = ("progress", "cancel_requested_by", "cancel_requested_at")


def upgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested_by", AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested_at", UTC(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch rebuild of `action` would drop a
    # table that `approval` rows reference while foreign keys are enforced.
    for name in reversed(ACTION_COLUMNS):
        op.execute(f"ALTER TABLE action DROP COLUMN {name}")
