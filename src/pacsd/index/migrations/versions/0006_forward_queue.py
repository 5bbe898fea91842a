"""The forwarding queue: table forward_queue (one row per instance and destination).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('forward_queue',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('destination', sa.String(length=512), nullable=False),
    sa.Column('sop_uid', sa.String(length=64), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claim', sa.String(length=36), nullable=False),
    sa.Column('claimed_by', sa.String(length=128), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('transfer_syntax', sa.String(length=64), nullable=False),
    sa.Column('commitment', sa.Boolean(), nullable=False),
    sa.Column('delete_after', sa.Boolean(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('forward_queue', schema=None) as batch_op:
        batch_op.create_index('ix_forward_queue_claim', ['claim'], unique=False)
        batch_op.create_index('ix_forward_queue_due', ['destination', 'state', 'next_attempt_at', 'pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_forward_queue_sop_uid'), ['sop_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_forward_queue_study_uid'), ['study_uid'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('forward_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_forward_queue_study_uid'))
        batch_op.drop_index(batch_op.f('ix_forward_queue_sop_uid'))
        batch_op.drop_index('ix_forward_queue_due')
        batch_op.drop_index('ix_forward_queue_claim')

    op.drop_table('forward_queue')
