"""Dump and load: every row of chosen documents, for moving them between databases."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.core import Store
from collab.store.documents import StateVectorOf, retire
from collab.store.models import (
    Base,
    CheckpointRow,
    Document,
    RetiredLineage,
    UpdateRow,
    listed,
    new_lineage,
)

__all__ = ["DocumentExists", "DumpBatch", "DumpStore"]


# -- Dump and load (collab.tools.dump) ---------------------------------------------------
#
# Moving documents with their whole history between databases. A dump reads every
# document in one snapshot, so it is consistent even while a server writes; a load writes
# each document in one transaction, so a document is either all there or not at all.
# Named versions and compactions live in tables that older schemas lack: they are looked
# up in the models' metadata and in the database, and skipped when either lacks them.
# Update rows are dumped without their counts (``inserted``, ``deleted``: derived from the
# bytes, and absent from older schemas), so loaded rows have NULL counts, "not measured":
# the timeline measures them from their bytes, as it does rows older than migration 0007.

_DUMP_BATCH = 500


class DocumentExists(ValueError):
    """A load found a document of the same name, and was not told to replace it."""


@dataclass(frozen=True, slots=True)
class DumpBatch:
    """Some rows of one document, as column values (bytes for blobs).

    ``kind`` is ``document`` (one row: ``name``, ``created_ms``), ``update``,
    ``checkpoint`` or ``named_version``; rows never carry ``doc_id``.
    """

    kind: str
    rows: list[dict[str, Any]]


def _optional(name: str) -> Table | None:
    return Base.metadata.tables.get(name)


async def _has_table(conn: AsyncConnection, name: str) -> bool:
    if _optional(name) is None:
        return False
    return bool(await conn.run_sync(lambda sync: sync.dialect.has_table(sync, name)))


class DumpStore:
    """The queries of ``collab dump`` and ``collab load`` over a ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def document_names(self, names: list[str]) -> set[str]:
        """Which of ``names`` exist (and are not deleted)."""
        found: set[str] = set()
        async with self.store.connect() as conn:
            for start in range(0, len(names), _DUMP_BATCH):
                chunk = names[start : start + _DUMP_BATCH]
                rows = await conn.execute(
                    select(Document.name).where(
                        Document.name.in_(chunk), Document.deleted_ms.is_(None)
                    )
                )
                found.update(rows.scalars())
        return found

    async def dump(self, names: list[str] | None = None) -> AsyncGenerator[DumpBatch]:
        """Every document (or those named), in name order, each followed by its updates
        (by seq), checkpoints and named versions, all read in one snapshot. Deleted
        documents are left out (``collab backup`` keeps them)."""
        async with self.store.connect(bounded=False) as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN")
            elif conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            query = select(
                Document.id, Document.name, Document.created_ms, Document.lineage
            ).where(Document.deleted_ms.is_(None), listed())
            if names is not None:
                query = query.where(Document.name.in_(names))
            documents = (await conn.execute(query.order_by(Document.name))).all()
            labels = (
                _optional("named_versions") if await _has_table(conn, "named_versions") else None
            )
            for doc_id, name, created_ms, lineage in documents:
                head = {"name": name, "created_ms": created_ms}
                if lineage is not None:
                    head["lineage"] = lineage
                yield DumpBatch("document", [head])
                after = 0
                while True:
                    rows = (
                        await conn.execute(
                            select(
                                UpdateRow.seq,
                                UpdateRow.created_ms,
                                UpdateRow.author,
                                UpdateRow.connection_id,
                                UpdateRow.data,
                            )
                            .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > after)
                            .order_by(UpdateRow.seq)
                            .limit(_DUMP_BATCH)
                        )
                    ).all()
                    if not rows:
                        break
                    yield DumpBatch("update", [dict(row._mapping) for row in rows])
                    after = rows[-1].seq
                after = -1
                while True:
                    # One at a time: each checkpoint is a whole document.
                    row = (
                        await conn.execute(
                            select(
                                CheckpointRow.upto_seq,
                                CheckpointRow.created_ms,
                                CheckpointRow.state,
                            )
                            .where(CheckpointRow.doc_id == doc_id, CheckpointRow.upto_seq > after)
                            .order_by(CheckpointRow.upto_seq)
                            .limit(1)
                        )
                    ).first()
                    if row is None:
                        break
                    yield DumpBatch("checkpoint", [dict(row._mapping)])
                    after = row.upto_seq
                if labels is not None:
                    columns = [c for c in labels.columns if c.name not in ("id", "doc_id")]
                    rows = (
                        await conn.execute(
                            select(*columns)
                            .where(labels.c.doc_id == doc_id)
                            .order_by(labels.c.seq, labels.c.id)
                        )
                    ).all()
                    if rows:
                        yield DumpBatch("named_version", [dict(row._mapping) for row in rows])

    @contextlib.asynccontextmanager
    async def load(
        self,
        name: str,
        created_ms: int,
        *,
        replace: bool = False,
        lineage: str | None = None,
        state_vector: StateVectorOf | None = None,
    ) -> AsyncIterator[Callable[[DumpBatch], Awaitable[None]]]:
        """Write one document in one transaction: yields ``insert(batch)`` for its rows;
        the transaction commits when the block ends without an exception.

        The document gets ``lineage`` (the dump's: a document moved between databases
        keeps its history's identity), or a new one. With ``replace``, an existing
        document of that name keeps its id (and whatever else refers to it) but loses its
        updates, checkpoints, named versions and compaction records to the loaded ones
        (and is no longer deleted, if it was); with ``state_vector`` (Yjs logic from the
        caller: ``collab.sync.lineage.state_vector_of``) its history is kept as a retired
        lineage first, so that no client still holding it can bring it back.

        Raises:
            DocumentExists: the document exists and ``replace`` is false.
        """
        async with self.store.connect(bounded=False) as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock first: a deferred transaction that reads and then
                # writes fails outright if the server commits in between.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            found = (
                await conn.execute(
                    select(Document.id, Document.lineage).where(Document.name == name)
                )
            ).first()
            optional = {t: await _has_table(conn, t) for t in ("named_versions", "compactions")}
            lineage = lineage or new_lineage()
            if found is None:
                result = await conn.execute(
                    insert(Document).values(name=name, created_ms=created_ms, lineage=lineage)
                )
                assert result.inserted_primary_key is not None
                doc_id = int(result.inserted_primary_key[0])
            elif not replace:
                raise DocumentExists(f"document {name!r} already exists")
            else:
                doc_id, old_lineage = found
                # The same history loaded over itself (a restore from its own dump) is no
                # replacement: whatever a client holds of it belongs to it.
                if lineage != old_lineage and state_vector is not None:
                    await retire(conn, doc_id, name, old_lineage, "replaced", state_vector)
                for table in ("named_versions", "compactions"):
                    rows_of = _optional(table)
                    if rows_of is not None and optional[table]:
                        await conn.execute(delete(rows_of).where(rows_of.c.doc_id == doc_id))
                await conn.execute(delete(CheckpointRow).where(CheckpointRow.doc_id == doc_id))
                await conn.execute(delete(UpdateRow).where(UpdateRow.doc_id == doc_id))
                await conn.execute(
                    update(Document)
                    .where(Document.id == doc_id)
                    .values(created_ms=created_ms, deleted_ms=None, lineage=lineage)
                )
            # The lineage loaded is current again (its document restored from a dump after
            # a purge or a replacement): its holders are no longer stale.
            await conn.execute(
                delete(RetiredLineage).where(
                    RetiredLineage.name == name, RetiredLineage.lineage == lineage
                )
            )
            targets: dict[str, Any] = {"update": UpdateRow, "checkpoint": CheckpointRow}
            if optional["named_versions"]:
                targets["named_version"] = _optional("named_versions")

            async def insert_batch(batch: DumpBatch) -> None:
                target = targets.get(batch.kind)
                if target is None:
                    raise ValueError(f"this database has no table for {batch.kind} rows")
                await conn.execute(
                    insert(target), [{**row, "doc_id": doc_id} for row in batch.rows]
                )

            yield insert_batch
            await conn.commit()
