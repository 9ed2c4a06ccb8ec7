"""documents, updates and checkpoints

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("name", name=op.f("uq_documents_name")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("doc_id", sa.Integer(), nullable=False),
        sa.Column("upto_seq", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["doc_id"], ["documents.id"], name=op.f("fk_checkpoints_doc_id_documents")
        ),
        sa.PrimaryKeyConstraint("doc_id", "upto_seq", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "updates",
        sa.Column("doc_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=True),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["doc_id"], ["documents.id"], name=op.f("fk_updates_doc_id_documents")
        ),
        sa.PrimaryKeyConstraint("doc_id", "seq", name=op.f("pk_updates")),
    )
    with op.batch_alter_table("updates") as batch_op:
        batch_op.create_index("ix_updates_doc_id_created_ms", ["doc_id", "created_ms"])


def downgrade() -> None:
    op.drop_table("updates")
    op.drop_table("checkpoints")
    op.drop_table("documents")
