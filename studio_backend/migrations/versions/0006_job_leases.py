"""job leases: the live worker renews its lease; only an expired one is taken back

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:50:00

A running job names its lease holder (host:pid:worker:nonce) and when the lease ends (DESIGN
3.7); a worker renews it every few seconds, so a second trainer (a CLI --resume beside the
studio's trainer) can never take a job that is still being run.
"""
import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('lease_owner', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('lease_expires_at')
        batch.drop_column('lease_owner')
