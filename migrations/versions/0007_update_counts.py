"""update counts: characters each update inserts and deletes, stored with it

``updates.inserted`` and ``updates.deleted`` hold what ``collab.sync.update.measure``
counts for the row (the room's validator counts them while it checks the update), so a
timeline page reads numbers instead of decoding every update on it. Both are nullable:
``NULL`` means "not measured", and the timeline measures the bytes of such rows. Existing
rows are left ``NULL`` rather than measured here: the count lives in Python (the Yjs
format), and a migration that decodes a whole log would hold every server's upgrade for
minutes on a large database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("updates", sa.Column("inserted", sa.Integer(), nullable=True))
    op.add_column("updates", sa.Column("deleted", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("updates") as batch:
        batch.drop_column("deleted")
        batch.drop_column("inserted")
