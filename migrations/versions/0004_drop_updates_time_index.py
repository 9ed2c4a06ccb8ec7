"""drop the updates time index

``ix_updates_doc_id_created_ms`` doubled what every group commit wrote: a commit
carrying one keystroke for each of 100 rooms dirtied 100 leaf pages of the primary key
*and* 100 of this index (2.2 ms against 1.1 ms of SQLite CPU per commit, measured). Its two
readers now use the primary key instead: a document's "last edited" time is its newest
update's (by seq), and "the document at time T" is a binary search over seq, because
``created_ms`` grows with ``seq`` within a document.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_updates_doc_id_created_ms", table_name="updates")


def downgrade() -> None:
    op.create_index("ix_updates_doc_id_created_ms", "updates", ["doc_id", "created_ms"])
