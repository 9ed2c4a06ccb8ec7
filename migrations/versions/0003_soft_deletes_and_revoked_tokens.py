"""soft deletes and revoked tokens

Adds ``documents.deleted_ms`` (a deleted document keeps its rows until purged) and the
``revoked_tokens`` table (token ids every server refuses, polled by running servers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_tokens")),
    )
    with op.batch_alter_table("documents") as batch_op:
        batch_op.add_column(sa.Column("deleted_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Deleted documents become live again: the downgraded schema cannot say otherwise.
    with op.batch_alter_table("documents") as batch_op:
        batch_op.drop_column("deleted_ms")
    op.drop_table("revoked_tokens")
