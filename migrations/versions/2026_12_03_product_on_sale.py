"""products can be taken off sale

Revision ID: 0005_on_sale
Revises: 0004_edge
Create Date: 2026-12-03 18:00:00.000000

- ``products.on_sale``: an off-sale product is hidden from the shop and refused when ordered
  (stock 0 is only "sold out"). Existing products stay on sale.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_on_sale"
down_revision: str | None = "0004_edge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER TABLE … ADD COLUMN on both databases (no batch rebuild of products, which
    # order items point at).
    op.add_column(
        "products", sa.Column("on_sale", sa.Boolean(), server_default=sa.true(), nullable=False)
    )


def downgrade() -> None:
    op.execute("ALTER TABLE products DROP COLUMN on_sale")
