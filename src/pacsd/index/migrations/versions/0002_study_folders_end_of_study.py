"""study folders claimed once; end-of-study work persisted

`study_folders`: the folder and account each study is filed in, claimed when its first instance
is placed, so two studies whose tags make the same folder name never share it.  Existing studies
filed under `<study folder>/Dicom/<series>/<file>` (the accounts scheme) get a claim on the folder
of their first instance (the first study claims a folder two of them already share).
`studies.end_work_*`: end-of-study work done, or being done by which node; studies already
stable count as done.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 08:09:02.673839

"""
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DICOM_FOLDER = "Dicom"  # pacsd.storage.accounts.DICOM_FOLDER when this migration was written


def upgrade() -> None:
    """Upgrade schema."""
    study_folders = op.create_table('study_folders',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('folder', sa.String(length=1024), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('folder'),
    sa.UniqueConstraint('study_uid')
    )
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_work_done_for', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('end_work_node', sa.String(length=128), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('end_work_claimed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE studies SET end_work_done_for = stable_at")
    _claim_existing_study_folders(study_folders)


def _claim_existing_study_folders(study_folders: sa.Table) -> None:
    conn = op.get_bind()
    first_instances = sa.text(
        "SELECT st.study_uid, st.account, i.path FROM studies st JOIN ("
        " SELECT se.study_pk AS study_pk, MIN(i.pk) AS instance_pk FROM instances i"
        " JOIN series se ON i.series_pk = se.pk GROUP BY se.study_pk) f ON f.study_pk = st.pk"
        " JOIN instances i ON i.pk = f.instance_pk ORDER BY st.pk")
    now, taken, claims = datetime.now(timezone.utc), set(), []
    for study_uid, account, path in conn.execute(first_instances):
        parts = path.split("/")
        folder = "/".join(parts[:-3])
        if len(parts) >= 4 and parts[-3] == DICOM_FOLDER and folder not in taken:
            taken.add(folder)
            claims.append({"study_uid": study_uid, "account": account, "folder": folder, "claimed_at": now})
    if claims:
        conn.execute(study_folders.insert(), claims)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('end_work_claimed_at')
        batch_op.drop_column('end_work_node')
        batch_op.drop_column('end_work_done_for')

    op.drop_table('study_folders')
