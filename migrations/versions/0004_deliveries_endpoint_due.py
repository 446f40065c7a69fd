"""deliveries: the endpoint index also orders by next_attempt_at

A breaker defers only the rows of its endpoint that came due, and its probe claims that
endpoint's earliest: with ``next_attempt_at`` in the index both read a range instead of
every pending row the endpoint has (tens of thousands for one that has been down a while).

Revision ID: 0004_endpoint_due
Revises: 0003_fillfactor
"""

from alembic import op

revision = "0004_endpoint_due"
down_revision = "0003_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_endpoint_due", ["endpoint_id", "status", "next_attempt_at"]
        )
        batch_op.drop_index("ix_deliveries_endpoint_status")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_endpoint_status", ["endpoint_id", "status"])
        batch_op.drop_index("ix_deliveries_endpoint_due")
