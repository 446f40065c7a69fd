"""endpoints: held_until, so a publish inserts a held endpoint's deliveries already held

A worker holding an endpoint's deliveries (an open breaker, a hanging endpoint) moved each
new one out of the due index after it was inserted: a second write of every row, and every
claim read past them until then.

Revision ID: 0006_held_until
Revises: 0005_endpoint_fk
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_held_until"
down_revision = "0005_endpoint_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("held_until")
