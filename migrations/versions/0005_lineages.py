"""lineages: the id of each document's current history, and the histories it retired

``documents.lineage`` names the current history of a document; a replacement of that
history (``collab load --replace``, a purge and re-creation under the same name) starts a
new one. ``retired_lineages`` keeps, by document name, the state vector each retired
history had, so that a client still holding one is recognised (``collab.sync.lineage``).
Documents that exist get a lineage here (16 random hex digits, as ``new_lineage`` makes),
so that a dump made from now on names every document's history: a load of a document's
own dump over it is then a restore, not a replacement that would refuse its own editors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("lineage", sa.String(length=32), nullable=True))
    random_hex = {
        "sqlite": "lower(hex(randomblob(8)))",
        "postgresql": "substr(md5(random()::text || id::text), 1, 16)",
    }.get(op.get_bind().dialect.name)
    if random_hex is not None:
        op.execute(f"UPDATE documents SET lineage = {random_hex} WHERE lineage IS NULL")
    op.create_table(
        "retired_lineages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("lineage", sa.String(length=32), nullable=True),
        sa.Column("retired_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("state_vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retired_lineages")),
    )
    op.create_index(op.f("ix_retired_lineages_name"), "retired_lineages", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_retired_lineages_name"), table_name="retired_lineages")
    op.drop_table("retired_lineages")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("lineage")
