"""assignments record their creator's subject (instructors see their own assignments' work)"""

import sqlalchemy as sa
from alembic import op

revision = "assignment_0005"
down_revision = "assignment_0004"


def upgrade() -> None:
    # Nullable: assignments created before sign-in have no creator, and only an admin sees
    # their submissions.
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("created_by")
