"""The database schema, as SQLAlchemy 2 models.

Only ``collab.store`` and the Alembic revisions in ``migrations/`` use these. The schema
changes only through a new Alembic revision (``alembic revision --autogenerate``), never
``create_all``; CI runs ``alembic check`` to catch a model change without one.

The model of history: ``updates`` is an append-only log, numbered 1, 2, 3... per
document in the order the server applied them; ``checkpoints`` holds the whole document
as of some update number, only to make loading fast. The relay never rewrites the log;
only compaction (``collab compact``, docs/history.md) merges old runs of it, each into one
row keyed by the run's last seq. ``named_versions`` label versions; ``compactions``
records what each compaction did.

A document is deleted softly: ``documents.deleted_ms`` is set, its rows stay until
``deleted_retention`` has passed and ``collab purge`` (or a server start) removes them.
``revoked_tokens`` lists token ids (JWT ``jti``) that no server may accept any more.
``documents.lineage`` and ``retired_lineages`` say which history a document has now and
which ones it had (docs/lineage.md).
"""

from __future__ import annotations

import secrets

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_lineage() -> str:
    """A new lineage id: 16 random hex digits."""
    return secrets.token_hex(8)


ARCHIVED = "\x1f"
"""The first character of an archived document's name: the row that keeps the history a
reset retired readable (``retired_lineages.doc_id`` points at it). No room can be called
that (room names have no control characters), so no client, REST call or load reaches it
by name, and listings leave such rows out."""


def archived_name(doc_id: int) -> str:
    """The name document ``doc_id`` takes when a reset archives its history."""
    return f"{ARCHIVED}archived:{doc_id}"


def listed() -> ColumnElement[bool]:
    """A condition on ``documents``: the documents people see, not archived histories."""
    return Document.name.not_like(ARCHIVED + "%")


__all__ = [
    "ARCHIVED",
    "Base",
    "CheckpointRow",
    "CompactionRow",
    "Document",
    "NamedVersionRow",
    "RetiredLineage",
    "RevokedToken",
    "UpdateRow",
    "archived_name",
    "listed",
    "new_lineage",
]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Document(Base):
    """A named document (one room)."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(1024), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    """Creation time, milliseconds since the Unix epoch (UTC)."""
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When it was deleted (soft: hidden, its room closed, restorable); ``None`` if not."""
    lineage: Mapped[str | None] = mapped_column(String(32))
    """The id of its current history (``new_lineage``): a new one whenever the history is
    replaced. Migration 0005 gave existing documents one."""


class RetiredLineage(Base):
    """A history a document (by name) no longer has: what a client still holding it may
    not bring back (``collab.sync.lineage``)."""

    __tablename__ = "retired_lineages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(1024), index=True)
    """The document's name (a purged document's row is gone; its name may come back)."""
    lineage: Mapped[str | None] = mapped_column(String(32))
    retired_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    """Why: ``replaced`` (a load over it), ``purged`` (deleted, then removed) or ``reset``
    (started over on purpose, its history kept)."""
    state_vector: Mapped[bytes] = mapped_column(LargeBinary)
    """Its state vector when it was retired: the clients and clocks of its structs."""
    doc_id: Mapped[int | None] = mapped_column(Integer)
    """The archived document row (``archived_name``) that still holds this history, for
    a reset; ``None`` when the history is gone (replaced, purged). No foreign key: SQLite
    cannot add one to an existing table without rebuilding it (migration 0006)."""


class UpdateRow(Base):
    """One Yjs update as a client sent it, with who sent it and when."""

    __tablename__ = "updates"
    # No index but the primary key: each one costs every group commit a page per room
    # written (migration 0004). Lookups by time rely on created_ms growing with seq.

    doc_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    connection_id: Mapped[str | None] = mapped_column(String(64))
    """The server's id for the WebSocket connection (or API call) that made it."""
    author: Mapped[str | None] = mapped_column(String(255))
    """Who made it: the verified identity once auth is on, else the name the client gave."""
    inserted: Mapped[int | None] = mapped_column(Integer)
    """Characters of text it inserts (``collab.sync.update.measure``), counted by the
    room's validator; for a row compaction merged, the sum over its members. ``NULL``:
    not measured (rows stored before migration 0007, loaded from a dump, or merged from
    a run with one unmeasured): the timeline measures the bytes instead."""
    deleted: Mapped[int | None] = mapped_column(Integer)
    """Yjs clock units it deletes, as ``inserted`` (``NULL`` together with it)."""


class CheckpointRow(Base):
    """The whole document, encoded as one Yjs update, as of update ``upto_seq``."""

    __tablename__ = "checkpoints"

    doc_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    upto_seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[bytes] = mapped_column(LargeBinary)


class NamedVersionRow(Base):
    """A label on one version of a document ("sent to review")."""

    __tablename__ = "named_versions"
    # One label per name and document; it also serves "the named versions of a document".
    __table_args__ = (UniqueConstraint("doc_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    doc_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    seq: Mapped[int] = mapped_column(Integer)
    """The version labelled: the document after update ``seq``."""
    name: Mapped[str] = mapped_column(String(255))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str | None] = mapped_column(String(255))
    """Who labelled it."""


class CompactionRow(Base):
    """One compaction of one document: what it merged and what that saved."""

    __tablename__ = "compactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    doc_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    ran_ms: Mapped[int] = mapped_column(BigInteger)
    upto_seq: Mapped[int] = mapped_column(Integer)
    """Updates up to this seq were considered."""
    granularity_ms: Mapped[int] = mapped_column(BigInteger)
    rows_before: Mapped[int] = mapped_column(Integer)
    rows_after: Mapped[int] = mapped_column(Integer)
    bytes_before: Mapped[int] = mapped_column(BigInteger)
    """Bytes of updates and checkpoints of the document before..."""
    bytes_after: Mapped[int] = mapped_column(BigInteger)
    """...and after."""


class RevokedToken(Base):
    """A token no server accepts any more, by its id (the JWT ``jti`` claim)."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    revoked_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    """When the token expires anyway, if known: past it the row is useless and purged."""
