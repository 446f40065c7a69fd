"""ops: counts of finished deliveries removed by retention

Revision ID: 0002_ops_retention
Revises: 0002_dashboard
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_ops_retention"
down_revision = "0002_dashboard"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "retained_delivery_counts",
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint_id", "status"),
    )


def downgrade():
    op.drop_table("retained_delivery_counts")
