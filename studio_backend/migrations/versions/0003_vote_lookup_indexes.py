"""indexes for the arena's hot queries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 17:30:00

next_pair asks "comparisons this annotator has not voted on, fewest votes first": without an
index on votes.annotator_id its subquery scans every vote (EXPLAIN: SCAN votes), with it a
search (SEARCH votes USING COVERING INDEX); the vote writer's duplicate look-up uses it too.
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_votes_annotator_comparison', 'votes', ['annotator_id', 'comparison_id'])
    op.create_index('ix_comparisons_gold_votes', 'comparisons', ['gold', 'vote_count', 'id'])


def downgrade() -> None:
    op.drop_index('ix_comparisons_gold_votes', table_name='comparisons')
    op.drop_index('ix_votes_annotator_comparison', table_name='votes')
