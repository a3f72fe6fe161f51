"""job plans: the prompt enhancer's layout plan of a generation, stored with its job

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:10:00

DESIGN 3.5.1: the plan (a box per frame for every subject, model/layout.py) is made from the
request alone, shown to the user and kept with the job that rendered it.
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('plan', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('plan')
