"""held_fanouts: a held endpoint's deliveries are written just after the publish's commit

Inserting them in the publish's own transaction put their rows (a third of its writes
while two endpoints of ten were held) between every healthy endpoint's event and its
delivery. The publish now commits one row listing them and writes them after its wake-up.

Revision ID: 0007_held_fanouts
Revises: 0006_held_until
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_held_fanouts"
down_revision = "0006_held_until"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_fanouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rows", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("held_fanouts")
