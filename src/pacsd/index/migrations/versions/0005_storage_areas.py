"""Storage areas, retention and quotas: studies.last_accessed_at, protected flags on patients and
studies, table area_usage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protected', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_accessed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('protected', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_studies_last_accessed_at'), ['last_accessed_at'], unique=False)
    op.create_table('area_usage',
    sa.Column('area', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('instances', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('area')
    )


def downgrade() -> None:
    op.drop_table('area_usage')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_studies_last_accessed_at'))
        batch_op.drop_column('protected')
        batch_op.drop_column('last_accessed_at')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('protected')
