"""archived lineages: a reset keeps the history it retired readable

``collab reset`` (and ``POST /api/docs/{room}/reset``) starts a document over with a new
lineage and keeps the old history: its document row is renamed to an archived name (one
no room can have) and ``retired_lineages.doc_id`` points at it, so the history API can
still read it. Replacements and purges keep no history (``doc_id`` stays NULL).

A plain column, no foreign key: SQLite adds one to an existing table only by rebuilding
the table, and the store keeps the link itself (a purge removes the archived rows of the
name it purges).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("retired_lineages", sa.Column("doc_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retired_lineages") as batch:
        batch.drop_column("doc_id")
