"""vote segments: an annotator's verdict on each quarter of the two clips (DenseDPO's segment-level preferences)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 22:30:00

A vote may carry, beside its per-dimension and overall verdicts, one overall verdict per segment of the clips
(VOTE_SEGMENTS equal runs of frames), for A against B; NULL where none was given.
"""
import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('votes') as batch:
        batch.add_column(sa.Column('segments', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('votes') as batch:
        batch.drop_column('segments')
