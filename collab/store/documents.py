"""Documents' lifecycle (create, soft delete, purge, lineages) and revoked tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.store.core import Store, document_rows, now_ms
from collab.store.driver import Reader
from collab.store.models import (
    CheckpointRow,
    CompactionRow,
    Document,
    NamedVersionRow,
    RetiredLineage,
    RevokedToken,
    UpdateRow,
    archived_name,
    new_lineage,
)

__all__ = [
    "DocumentState",
    "DocumentStatus",
    "DocumentStore",
    "Lineage",
    "Reset",
    "RetiredInfo",
    "StateVectorOf",
    "TokenStore",
    "retire",
]


_NAMES_PER_QUERY = 500  # names per IN (...) list: well under every engine's limit

# -- Documents' lifecycle and revoked tokens (collab/http/documents.py, collab purge) ---
#
# Creating a document on purpose (rather than by joining its room), deleting it softly,
# undeleting it, and purging what was deleted long enough ago; and the revoked-token list
# every server polls. Small, direct transactions: none of it is on the relay's path.


@dataclass(frozen=True, slots=True)
class DocumentState:
    """A document row, deleted or not."""

    id: int
    name: str
    created_ms: int
    deleted_ms: int | None


class DocumentStore:
    """Create, soft-delete, undelete and purge documents."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, name: str) -> DocumentState | None:
        """The document called ``name``, deleted or not; ``None`` if there is none."""
        async with self.store.connect() as conn:
            row = (
                await conn.execute(
                    select(Document.id, Document.created_ms, Document.deleted_ms).where(
                        Document.name == name
                    )
                )
            ).first()
        return None if row is None else DocumentState(row[0], name, row[1], row[2])

    async def create(self, name: str) -> DocumentState | None:
        """Create an empty document; ``None`` if one of that name exists (even deleted)."""
        created_ms = now_ms()
        try:
            async with self.store.begin() as conn:
                result = await conn.execute(
                    insert(Document).values(
                        name=name, created_ms=created_ms, lineage=new_lineage()
                    )
                )
                new_id = result.inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None
        return DocumentState(int(new_id[0]), name, created_ms, None)

    async def delete(self, name: str, at_ms: int) -> bool:
        """Mark ``name`` deleted at ``at_ms``; ``False`` if absent or deleted already."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(Document)
                .where(Document.name == name, Document.deleted_ms.is_(None))
                .values(deleted_ms=at_ms)
            )
        return bool(result.rowcount)

    async def undelete(self, name: str) -> bool:
        """Make a deleted document live again; ``False`` if it is not deleted (or absent)."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(Document)
                .where(Document.name == name, Document.deleted_ms.is_not(None))
                .values(deleted_ms=None)
            )
        return bool(result.rowcount)

    async def deleted_among(self, names: list[str]) -> set[str]:
        """Which of ``names`` are deleted."""
        return {n for n, status in (await self.states_among(names)).items() if status.deleted}

    async def states_among(self, names: list[str]) -> dict[str, DocumentStatus]:
        """Each of ``names`` that has a document: deleted or not, its lineage, and when
        its name last retired one (a server checks its loaded rooms against these)."""
        retired = (
            select(func.max(RetiredLineage.retired_ms))
            .where(RetiredLineage.name == Document.name)
            .scalar_subquery()
        )
        found: dict[str, DocumentStatus] = {}
        if self.store.engine.dialect.name == "sqlite":
            # Every poll asks about every loaded room: through the async engine, 2,000
            # names cost the event loop 14 ms of CPU per poll (parameter and result
            # processing); straight to the driver on a reader thread, a fraction of it.
            direct = await self.store.read_direct(_states_on_sqlite, names)
            return {r[0]: DocumentStatus(r[1] is not None, r[2], r[3]) for r in direct}
        async with self.store.connect() as conn:
            for start in range(0, len(names), _NAMES_PER_QUERY):
                rows = await conn.execute(
                    select(Document.name, Document.deleted_ms, Document.lineage, retired).where(
                        Document.name.in_(names[start : start + _NAMES_PER_QUERY])
                    )
                )
                found.update((r[0], DocumentStatus(r[1] is not None, r[2], r[3])) for r in rows)
        return found

    async def purge(
        self,
        deleted_before_ms: int,
        *,
        dry_run: bool = False,
        state_vector: StateVectorOf | None = None,
    ) -> list[str]:
        """Remove every document deleted before ``deleted_before_ms`` with all its rows
        (updates, checkpoints, named versions, compaction records); one transaction per
        document. Returns the names purged (or that would be, with ``dry_run``).

        ``state_vector`` (the caller's Yjs logic: ``collab.sync.lineage.state_vector_of``)
        turns a document's rows into its state vector, kept in ``retired_lineages`` under
        its name: a client still holding the purged history cannot bring it back into a
        new document of that name. Without it nothing is kept.
        """
        async with self.store.connect() as conn:
            due = (
                await conn.execute(
                    select(Document.id, Document.name, Document.lineage)
                    .where(Document.deleted_ms < deleted_before_ms)
                    .order_by(Document.name)
                )
            ).all()
        if dry_run:
            return [row.name for row in due]
        purged = []
        for doc_id, name, lineage in due:
            async with self.store.begin(bounded=False) as conn:
                # Still deleted (an undelete may have come in between): claim it first.
                claimed = await conn.execute(
                    update(Document)
                    .where(Document.id == doc_id, Document.deleted_ms < deleted_before_ms)
                    .values(deleted_ms=Document.deleted_ms)
                )
                if not claimed.rowcount:
                    continue
                if state_vector is not None:
                    await retire(conn, doc_id, name, lineage, "purged", state_vector)
                # The histories its resets archived go with it: a purge removes the name's
                # content (their state vectors stay, as the purged history's does).
                archives = (
                    await conn.execute(
                        select(RetiredLineage.doc_id).where(
                            RetiredLineage.name == name, RetiredLineage.doc_id.is_not(None)
                        )
                    )
                ).scalars()
                for gone in [doc_id, *archives]:
                    await _delete_rows(conn, gone)
                await conn.execute(
                    update(RetiredLineage).where(RetiredLineage.name == name).values(doc_id=None)
                )
            purged.append(name)
        return purged

    async def reset(
        self,
        name: str,
        state_vector: StateVectorOf,
        content: bytes | None = None,
        author: str | None = None,
        connection_id: str | None = None,
    ) -> Reset | None:
        """Start document ``name`` over with a new lineage, in one transaction: its
        history is retired (its state vector kept, as for a replacement) and archived,
        still readable through ``archived``; the new history is empty, or holds the one
        update ``content`` (seq 1, by ``author``). ``None`` if there is no such document
        (or it is deleted).

        The caller must make sure no room of ``name`` is live while this runs
        (``Hub.start_over``): a room's queued rows would land in the archive.
        """
        async with self.store.begin(bounded=False) as conn:
            # Claim the row with a write first: on SQLite a transaction that reads and
            # then writes fails outright if the server commits in between.
            live = (Document.name == name, Document.deleted_ms.is_(None))
            claimed = await conn.execute(
                update(Document).where(*live).values(lineage=Document.lineage)
            )
            if not claimed.rowcount:
                return None
            found = (await conn.execute(select(Document.id, Document.lineage).where(*live))).one()
            old_id, old_lineage = found
            await retire(conn, old_id, name, old_lineage, "reset", state_vector, keep=True)
            await conn.execute(
                update(Document).where(Document.id == old_id).values(name=archived_name(old_id))
            )
            at = now_ms()
            lineage = new_lineage()
            result = await conn.execute(
                insert(Document).values(name=name, created_ms=at, lineage=lineage)
            )
            key = result.inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            seq = 0
            if content is not None:
                seq = 1
                await conn.execute(
                    insert(UpdateRow).values(
                        doc_id=new_id,
                        seq=seq,
                        created_ms=at,
                        data=content,
                        connection_id=connection_id,
                        author=author,
                    )
                )
        return Reset(name, old_lineage, lineage, seq)

    async def lineage(self, name: str) -> Lineage | None:
        """Which history document ``name`` has now, and which it retired (oldest first);
        ``None`` if there is no such document (a deleted one still has its lineage)."""
        async with self.store.connect() as conn:
            found = (
                await conn.execute(select(Document.lineage).where(Document.name == name))
            ).first()
            if found is None:
                return None
            rows = (
                await conn.execute(
                    select(
                        RetiredLineage.lineage,
                        RetiredLineage.retired_ms,
                        RetiredLineage.reason,
                        RetiredLineage.doc_id,
                    )
                    .where(RetiredLineage.name == name)
                    .order_by(RetiredLineage.id)
                )
            ).all()
        return Lineage(found[0], [RetiredInfo(r[0], r[1], r[2], r[3] is not None) for r in rows])


StateVectorOf = Callable[[list[bytes]], bytes]
"""Rows of one document (its newest checkpoint, then the updates after it) to its state
vector: Yjs logic, which the store takes from its caller."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """A document's current lineage (``None``: a row written without one; migration 0005
    gave every row it found one) and the ones it retired."""

    current: str | None
    retired: list[RetiredInfo]


@dataclass(frozen=True, slots=True)
class RetiredInfo:
    """One retired lineage of a document, as the API shows it."""

    lineage: str | None
    retired_ms: int
    reason: str
    readable: bool = False
    """Its history is kept (a reset archived it): the history API reads it with
    ``?lineage=``."""


@dataclass(frozen=True, slots=True)
class DocumentStatus:
    """What a server checks of a loaded room's document (``DocumentStore.states_among``)."""

    deleted: bool
    lineage: str | None
    retired_ms: int | None
    """When its name last retired a lineage, if ever."""


@dataclass(frozen=True, slots=True)
class Reset:
    """What ``DocumentStore.reset`` did: the lineage it retired and the one it started."""

    name: str
    retired: str | None
    lineage: str
    seq: int
    """The new history's newest seq: 1 with content, else 0."""


async def retire(
    conn: AsyncConnection,
    doc_id: int,
    name: str,
    lineage: str | None,
    reason: str,
    state_vector: StateVectorOf,
    *,
    keep: bool = False,
) -> None:
    """Keep the state vector of document ``doc_id``'s history as a retired lineage of
    ``name`` (in the caller's transaction, before its rows are replaced or removed); with
    ``keep``, the rows stay under ``doc_id`` (archived by a reset) and the retired
    lineage points at them.

    The rows are read as a room load reads them (``document_rows``); ``state_vector`` is
    Yjs work, done in a worker thread rather than on the loop with the write lock held."""
    loaded = await conn.run_sync(document_rows, doc_id, None)
    rows = ([] if loaded.checkpoint is None else [loaded.checkpoint]) + loaded.updates
    if not rows and not keep:
        return  # an empty history: nobody can hold anything of it
    encoded = await asyncio.to_thread(state_vector, rows) if rows else b"\x00"
    await conn.execute(
        insert(RetiredLineage).values(
            name=name,
            lineage=lineage,
            retired_ms=now_ms(),
            reason=reason,
            state_vector=encoded,
            doc_id=doc_id if keep else None,
        )
    )


async def _delete_rows(conn: AsyncConnection, doc_id: int) -> None:
    """Remove document ``doc_id`` and every row of its history."""
    for table in (NamedVersionRow, CompactionRow, CheckpointRow, UpdateRow):
        await conn.execute(delete(table).where(table.doc_id == doc_id))
    await conn.execute(delete(Document).where(Document.id == doc_id))


class TokenStore:
    """The ids of revoked tokens (JWT ``jti``), which every server polls."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def revoke(self, jti: str, expires_ms: int | None = None) -> bool:
        """Revoke token ``jti``; ``False`` if it was revoked already.

        Args:
            expires_ms: when the token expires anyway, if known; the row is purged after.
        """
        try:
            async with self.store.begin() as conn:
                await conn.execute(
                    insert(RevokedToken).values(
                        jti=jti, revoked_ms=now_ms(), expires_ms=expires_ms
                    )
                )
        except IntegrityError:
            return False
        return True

    async def revoked(self) -> set[str]:
        """Every revoked token id."""
        async with self.store.connect() as conn:
            return set((await conn.execute(select(RevokedToken.jti))).scalars())

    async def purge(self, expired_before_ms: int) -> int:
        """Forget revocations of tokens that expired before ``expired_before_ms`` (an
        expired token is refused anyway); returns how many."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                delete(RevokedToken).where(RevokedToken.expires_ms < expired_before_ms)
            )
        return int(result.rowcount or 0)


# ``states_among`` on SQLite, as the SQLAlchemy query of its other engines reads.
_STATES_SQL = (
    "SELECT d.name, d.deleted_ms, d.lineage,"
    " (SELECT max(r.retired_ms) FROM retired_lineages AS r WHERE r.name = d.name)"
    " FROM documents AS d WHERE d.name IN ({marks})"
)


def _states_on_sqlite(reader: Reader, names: list[str]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        # Only "?" marks are formatted in: the names travel as parameters.
        rows.extend(
            reader.rows(_STATES_SQL.format(marks=",".join("?" * len(chunk))), tuple(chunk))
        )
    return rows
