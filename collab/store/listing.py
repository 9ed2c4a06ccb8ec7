"""The document list: which documents there are, most recently edited first.

Owns ``DocumentInfo`` and the keyset-paginated query behind ``Store.list_documents`` (the
browser's list and ``GET /api/docs``). Read-only: it never writes, and never goes near
the writer's queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.models import CheckpointRow, Document, UpdateRow, listed as listed_documents

__all__ = ["DocumentInfo", "list_documents"]


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One row of the document list: what a person choosing a document wants to see."""

    id: int
    name: str
    created_ms: int
    updated_ms: int
    """Time of the newest stored update, or the creation time if there is none."""
    updates: int
    """Number of stored updates."""
    size: int
    """Bytes a load reads: the newest checkpoint plus the updates after it (the same
    measure as ``Room.size``)."""


async def list_documents(
    conn: AsyncConnection, contains: str, limit: int, before: tuple[int, int] | None
) -> list[DocumentInfo]:
    """One page of the document list, read on ``conn`` (see ``Store.list_documents``)."""
    # "Last edited" is the newest update's time: one primary-key lookup per document
    # (created_ms grows with seq). Counting and measuring updates costs a scan of each
    # document's rows, so it is done for the page's documents only.
    updated = func.coalesce(
        select(UpdateRow.created_ms)
        .where(UpdateRow.doc_id == Document.id)
        .order_by(UpdateRow.seq.desc())
        .limit(1)
        .scalar_subquery(),
        Document.created_ms,
    )
    listed = select(
        Document.id, Document.name, Document.created_ms, updated.label("updated_ms")
    ).where(Document.deleted_ms.is_(None), listed_documents())
    if contains:
        listed = listed.where(Document.name.icontains(contains, autoescape=True))
    docs = listed.subquery()
    page = select(docs).order_by(docs.c.updated_ms.desc(), docs.c.id.desc()).limit(limit)
    if before is not None:
        at, doc_id = before
        page = page.where(
            or_(docs.c.updated_ms < at, and_(docs.c.updated_ms == at, docs.c.id < doc_id))
        )
    rows = (await conn.execute(page)).all()
    ids = [row.id for row in rows]
    if not ids:
        return []
    newest = (
        select(CheckpointRow.doc_id, func.max(CheckpointRow.upto_seq).label("upto"))
        .where(CheckpointRow.doc_id.in_(ids))
        .group_by(CheckpointRow.doc_id)
        .subquery()
    )
    checkpoints = {
        doc_id: size
        for doc_id, size in await conn.execute(
            select(CheckpointRow.doc_id, func.length(CheckpointRow.state)).join(
                newest,
                and_(
                    newest.c.doc_id == CheckpointRow.doc_id,
                    newest.c.upto == CheckpointRow.upto_seq,
                ),
            )
        )
    }
    tail = case(
        (UpdateRow.seq > func.coalesce(newest.c.upto, 0), func.length(UpdateRow.data)),
        else_=0,
    )
    counts = {
        doc_id: (count, int(tail_bytes or 0))
        for doc_id, count, tail_bytes in await conn.execute(
            select(UpdateRow.doc_id, func.count(), func.sum(tail))
            .outerjoin(newest, newest.c.doc_id == UpdateRow.doc_id)
            .where(UpdateRow.doc_id.in_(ids))
            .group_by(UpdateRow.doc_id)
        )
    }
    infos = []
    for row in rows:
        count, tail_bytes = counts.get(row.id, (0, 0))
        infos.append(
            DocumentInfo(
                row.id,
                row.name,
                row.created_ms,
                row.updated_ms,
                count,
                checkpoints.get(row.id, 0) + tail_bytes,
            )
        )
    return infos
