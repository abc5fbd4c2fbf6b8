"""why an approver's 30-minute grant did not cover a new card

`action` gains `grant_note`: the approvers whose 30-minute grant for exactly this call was
left out when it was proposed, each with the gate's reason (JSON, written once, shown on the
card while that revision waits). Existing rows need nothing: no note was kept before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): rebuilding `action` would drop a table other rows
    # reference while foreign keys are enforced on SQLite.
    op.add_column("action", sa.Column("grant_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE action DROP COLUMN grant_note")
