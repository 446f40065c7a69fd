"""deliveries: leave room in each page so a claim's update stays on its page

A claim only changes ``locked_until`` (no index covers it), so PostgreSQL can update the
row in place (a HOT update) when its page has room, instead of adding an entry to each of
the table's four indexes. With full pages only a third of updates were HOT.

Revision ID: 0003_fillfactor
Revises: 0002_ops_retention
"""

from alembic import op

revision = "0003_fillfactor"
down_revision = "0002_ops_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
