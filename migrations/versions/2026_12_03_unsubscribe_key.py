"""users.unsubscribe_key: revocable email unsubscribe links

Revision ID: 0004_edge
Revises: 0004_accounts
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_edge"
down_revision: str | None = "0004_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null until first rotated: the links sent before then carry the empty key.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unsubscribe_key", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("unsubscribe_key")
