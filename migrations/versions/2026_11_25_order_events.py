"""order events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:24:01.343872
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import farmstand.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_counter")),
    )
    # The one counter row: its lock serialises sequencing (see farmstand.events.service).
    op.bulk_insert(
        sa.table(
            "event_counter", sa.column("id", sa.Integer), sa.column("position", sa.BigInteger)
        ),
        [{"id": 1, "position": 0}],
    )
    op.create_table(
        "order_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("farm_id", sa.String(length=36), nullable=True),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("data", farmstand.db.JSONType, nullable=False),
        sa.Column("created_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("position", name=op.f("uq_order_events_position")),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index("ix_order_events_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_order_events_customer_id_position", ["customer_id", "position"], unique=False
        )
        batch_op.create_index(
            "ix_order_events_farm_id_position", ["farm_id", "position"], unique=False
        )
        batch_op.create_index(
            "ix_order_events_order_id_position", ["order_id", "position"], unique=False
        )
        batch_op.create_index(
            "ix_order_events_unsequenced",
            ["id"],
            unique=False,
            postgresql_where=sa.text("position IS NULL"),
            sqlite_where=sa.text("position IS NULL"),
        )
        batch_op.create_index(
            "ix_order_events_user_id_position", ["user_id", "position"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index("ix_order_events_user_id_position")
        batch_op.drop_index(
            "ix_order_events_unsequenced",
            postgresql_where=sa.text("position IS NULL"),
            sqlite_where=sa.text("position IS NULL"),
        )
        batch_op.drop_index("ix_order_events_order_id_position")
        batch_op.drop_index("ix_order_events_farm_id_position")
        batch_op.drop_index("ix_order_events_customer_id_position")
        batch_op.drop_index("ix_order_events_created_at")

    op.drop_table("order_events")
    op.drop_table("event_counter")
