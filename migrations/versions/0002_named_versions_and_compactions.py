"""named versions and compactions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "named_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("doc_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["doc_id"], ["documents.id"], name=op.f("fk_named_versions_doc_id_documents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_named_versions")),
        sa.UniqueConstraint("doc_id", "name", name=op.f("uq_named_versions_doc_id")),
    )
    op.create_table(
        "compactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("doc_id", sa.Integer(), nullable=False),
        sa.Column("ran_ms", sa.BigInteger(), nullable=False),
        sa.Column("upto_seq", sa.Integer(), nullable=False),
        sa.Column("granularity_ms", sa.BigInteger(), nullable=False),
        sa.Column("rows_before", sa.Integer(), nullable=False),
        sa.Column("rows_after", sa.Integer(), nullable=False),
        sa.Column("bytes_before", sa.BigInteger(), nullable=False),
        sa.Column("bytes_after", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["doc_id"], ["documents.id"], name=op.f("fk_compactions_doc_id_documents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compactions")),
    )
    with op.batch_alter_table("compactions") as batch_op:
        batch_op.create_index(batch_op.f("ix_compactions_doc_id"), ["doc_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("compactions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_compactions_doc_id"))
    op.drop_table("compactions")
    op.drop_table("named_versions")
