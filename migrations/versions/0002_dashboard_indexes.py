"""dashboard: indexes for the attempt log's status and event-type filters

Revision ID: 0002_dashboard
Revises: 0001
Create Date: 2026-11-23 11:30:00

"""
from alembic import op


revision = '0002_dashboard'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index(
            'ix_attempts_endpoint_status_id', ['endpoint_id', 'status', 'id'], unique=False
        )
        batch_op.create_index(
            'ix_attempts_endpoint_type_id', ['endpoint_id', 'event_type', 'id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_endpoint_type_id')
        batch_op.drop_index('ix_attempts_endpoint_status_id')
