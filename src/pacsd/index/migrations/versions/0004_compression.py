"""Lossless compression: tables compression_outcomes (instances skipped or failed, and why) and
compression_journal (compressions under way, for recovery after a crash).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:50:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('compression_outcomes',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('instance_pk', sa.Integer(), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('instance_pk')
    )
    op.create_table('compression_journal',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('instance_pk', sa.Integer(), nullable=False),
    sa.Column('old_path', sa.String(length=1024), nullable=False),
    sa.Column('new_path', sa.String(length=1024), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('compression_journal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_compression_journal_instance_pk'), ['instance_pk'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('compression_journal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_compression_journal_instance_pk'))
    op.drop_table('compression_journal')
    op.drop_table('compression_outcomes')
