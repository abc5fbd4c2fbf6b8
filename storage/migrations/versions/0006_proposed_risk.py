"""the tier an action was proposed at

`action.proposed_risk` keeps the tier an action was proposed at: set from `risk` when the row
is inserted and never updated, while `risk` follows edits (an edit can raise medium to
critical while the card waits). The all-time counters of `GET /metrics` count by it, so an
edit never moves a proposal from one tier's series to another's (a counter that goes down
reads as a reset to `rate()` and `increase()`). Existing actions are backfilled from `risk`
(one an edit already raised keeps the raised tier: its proposal tier was never recorded).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proposed_risk", AutoString(length=16), nullable=True))
    action = sa.table("action", sa.column("risk", sa.String()), sa.column("proposed_risk"))
    op.execute(
        action.update().where(action.c.proposed_risk.is_(None)).values(proposed_risk=action.c.risk)
    )


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch rebuild of `action` would drop a
    # table that `approval` rows reference while foreign keys are enforced.
    op.execute("ALTER TABLE action DROP COLUMN proposed_risk")
