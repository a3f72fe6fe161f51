"""model versions record their backend and LoRA adapter; jobs record their worker

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:45:00

A version is (backend, model directory or Hub id, optional LoRA adapter): the embedded Omni
model or Wan VACE through diffusers (DESIGN 3.5). Existing versions are the embedded model's.
A job names the worker that ran it (workers may run on other hosts).
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('backend', sa.String(length=16), nullable=False, server_default='embedded'))
        batch.add_column(sa.Column('adapter', sa.String(length=1024), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('worker', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('worker')
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('adapter')
        batch.drop_column('backend')
