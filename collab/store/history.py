"""History reads: the rows and checkpoints that ``collab.history`` replays."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import case, delete, func, insert, null, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.row import MergedRun, Row, TimelineRow
from collab.store.core import Store, newest_checkpoint, now_ms
from collab.store.models import (
    ARCHIVED,
    CheckpointRow,
    CompactionRow,
    Document,
    NamedVersionRow,
    RetiredLineage,
    UpdateRow,
    listed,
)

__all__ = [
    "DocumentHead",
    "HistoryStore",
    "MergedRun",
    "NamedVersion",
    "Storage",
    "TimelineRow",
    "VersionSource",
]


# -- History reads ------------------------------------------------------------------------
#
# Everything below serves history (collab.history.service): read-only queries, plus the two
# small writes history owns (named versions, and compaction, the one rewrite of the log).
# None of it goes near the group-commit writer (writer.py). Reads that need more than one
# query run in one snapshot: SQLite's Python driver does not begin a transaction for a
# SELECT, so without an explicit BEGIN a compaction committed between two queries could be
# seen by the second and not by the first.


@dataclass(frozen=True, slots=True)
class DocumentHead:
    """A document as history finds it: its id and its newest version."""

    id: int
    name: str
    created_ms: int
    last_seq: int
    lineage: str | None = None
    """Which history of the name this is (docs/lineage.md)."""


@dataclass(frozen=True, slots=True)
class VersionSource:
    """What rebuilding version ``seq`` needs: a checkpoint at or below it and the updates
    after the checkpoint, up to ``seq``."""

    seq: int
    created_ms: int
    checkpoint: bytes | None
    checkpoint_seq: int
    updates: list[bytes]


@dataclass(frozen=True, slots=True)
class NamedVersion:
    """A label on a version."""

    id: int
    seq: int
    name: str
    created_ms: int
    author: str | None


@dataclass(frozen=True, slots=True)
class Storage:
    """Bytes a document takes in the database (payloads only, not SQLite's overhead)."""

    rows: int
    update_bytes: int
    checkpoints: int
    checkpoint_bytes: int


class HistoryStore:
    """History's queries over a ``Store``'s database (SQL only; no Yjs)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        async with self.store.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN")
            yield conn

    async def document(self, name: str) -> DocumentHead | None:
        """The document called ``name``, or ``None`` (also when it is deleted)."""
        last = (
            select(func.max(UpdateRow.seq))
            .where(UpdateRow.doc_id == Document.id)
            .scalar_subquery()
        )
        async with self.store.connect() as conn:
            row = (
                await conn.execute(
                    select(Document.id, Document.created_ms, last, Document.lineage).where(
                        Document.name == name, Document.deleted_ms.is_(None)
                    )
                )
            ).first()
        return None if row is None else DocumentHead(row[0], name, row[1], row[2] or 0, row[3])

    async def lineage(self, name: str, lineage: str) -> DocumentHead | None:
        """History ``lineage`` of document ``name``: its current one, or one a reset
        retired and kept (an archived document: ``models.archived_name``); ``None`` if
        there is no such history (never kept, or the document is deleted)."""
        last = select(func.max(UpdateRow.seq)).where(UpdateRow.doc_id == Document.id)
        kept = select(RetiredLineage.doc_id).where(
            RetiredLineage.name == name, RetiredLineage.lineage == lineage
        )
        async with self.store.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        Document.id, Document.created_ms, last.scalar_subquery(), Document.lineage
                    )
                    .where(
                        Document.deleted_ms.is_(None),
                        ((Document.name == name) & (Document.lineage == lineage))
                        | (Document.name.like(ARCHIVED + "%") & Document.id.in_(kept)),
                    )
                    .limit(1)
                )
            ).first()
        return None if row is None else DocumentHead(row[0], name, row[1], row[2] or 0, row[3])

    async def document_names(self) -> list[str]:
        """Every document's name, in name order (deleted documents left out)."""
        async with self.store.connect() as conn:
            names = await conn.execute(
                select(Document.name)
                .where(Document.deleted_ms.is_(None), listed())
                .order_by(Document.name)
            )
            return list(names.scalars())

    async def version_source(self, doc_id: int, seq: int) -> VersionSource:
        """The rows that rebuild the latest version at or below ``seq`` (seqs inside a
        merged run resolve to the version before the run)."""
        async with self._snapshot() as conn:
            row = (
                await conn.execute(
                    select(UpdateRow.seq, UpdateRow.created_ms)
                    .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= seq)
                    .order_by(UpdateRow.seq.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                created = (
                    await conn.execute(select(Document.created_ms).where(Document.id == doc_id))
                ).scalar_one()
                return VersionSource(0, created, None, 0, [])
            version, created_ms = row[0], row[1]
            checkpoint_seq, state = await newest_checkpoint(conn, doc_id, version)
            updates = (
                await conn.execute(
                    select(UpdateRow.data)
                    .where(
                        UpdateRow.doc_id == doc_id,
                        UpdateRow.seq > checkpoint_seq,
                        UpdateRow.seq <= version,
                    )
                    .order_by(UpdateRow.seq)
                )
            ).scalars()
            return VersionSource(version, created_ms, state, checkpoint_seq, list(updates))

    async def seq_at(self, doc_id: int, ms: int) -> int:
        """The last seq stored at or before time ``ms`` (0: none yet).

        A binary search over seq on the primary key, about 20 lookups for a million
        updates: ``created_ms`` grows with ``seq`` within a document (the server stamps
        each update as it applies it), and an index on time would cost every group
        commit one more page per room written (migration 0004). Around a step back of
        the server's clock the answer is only as right as the clock was.
        """
        rows = select(UpdateRow.seq, UpdateRow.created_ms).where(UpdateRow.doc_id == doc_id)
        async with self._snapshot() as conn:
            newest = (await conn.execute(rows.order_by(UpdateRow.seq.desc()).limit(1))).first()
            if newest is None or newest[1] <= ms:
                return 0 if newest is None else int(newest[0])
            # ``low`` is 0 or a stored seq at or before ms; ``high`` is a stored seq after
            # ms, or a bound with no stored seq between the middle and it.
            low, high = 0, int(newest[0])
            while high - low > 1:
                middle = (low + high) // 2
                row = (
                    await conn.execute(
                        rows.where(UpdateRow.seq >= middle, UpdateRow.seq < high)
                        .order_by(UpdateRow.seq)
                        .limit(1)
                    )
                ).first()
                if row is None:
                    high = middle
                elif row[1] <= ms:
                    low = int(row[0])
                else:
                    high = int(row[0])
            return low

    async def rows(
        self, doc_id: int, *, after: int, upto: int, newest_first: bool = False, limit: int = -1
    ) -> list[Row]:
        """Rows with ``after < seq <= upto``, each with the first seq it covers.

        Newest first takes the newest ``limit`` of them; else the oldest.
        """
        order = UpdateRow.seq.desc() if newest_first else UpdateRow.seq
        query = (
            select(
                UpdateRow.seq,
                UpdateRow.created_ms,
                UpdateRow.data,
                UpdateRow.author,
                UpdateRow.connection_id,
                UpdateRow.inserted,
                UpdateRow.deleted,
            )
            .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > after, UpdateRow.seq <= upto)
            .order_by(order)
        )
        if limit >= 0:
            query = query.limit(limit)
        async with self._snapshot() as conn:
            fetched = (await conn.execute(query)).all()
            if not fetched:
                return []
            oldest = fetched[-1][0] if newest_first else fetched[0][0]
            before = (
                await conn.execute(
                    select(func.max(UpdateRow.seq)).where(
                        UpdateRow.doc_id == doc_id, UpdateRow.seq < oldest
                    )
                )
            ).scalar() or 0
        ascending = fetched[::-1] if newest_first else fetched
        out: list[Row] = []
        prev = before
        for seq, created_ms, data, author, connection_id, inserted, deleted in ascending:
            out.append(
                Row(seq, prev + 1, created_ms, data, author, connection_id, inserted, deleted)
            )
            prev = seq
        return out[::-1] if newest_first else out

    async def timeline_rows(self, doc_id: int, *, upto: int, limit: int) -> list[TimelineRow]:
        """``(seq, created_ms, author, connection_id, inserted, deleted, data)`` of the
        newest ``limit`` rows at or below ``upto``, newest first (plain tuples: a timeline
        page reads thousands). ``data`` is fetched only for rows stored without counts
        (``inserted`` NULL), which the timeline measures; it is ``None`` for the others."""
        unmeasured = case(
            (UpdateRow.inserted.is_(None) | UpdateRow.deleted.is_(None), UpdateRow.data),
            else_=null(),
        )
        async with self.store.connect() as conn:
            rows = await conn.execute(
                select(
                    UpdateRow.seq,
                    UpdateRow.created_ms,
                    UpdateRow.author,
                    UpdateRow.connection_id,
                    UpdateRow.inserted,
                    UpdateRow.deleted,
                    unmeasured,
                )
                .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= upto)
                .order_by(UpdateRow.seq.desc())
                .limit(limit)
            )
            return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def authors(
        self, doc_id: int, *, after: int, upto: int
    ) -> set[tuple[str | None, str | None]]:
        """Up to two distinct (author, connection_id) identities among rows
        ``after < seq <= upto``: enough to tell whether one person made them all."""
        where = (UpdateRow.doc_id == doc_id, UpdateRow.seq > after, UpdateRow.seq <= upto)
        async with self._snapshot() as conn:
            named = (
                await conn.execute(
                    select(UpdateRow.author)
                    .where(*where, UpdateRow.author.is_not(None))
                    .distinct()
                    .limit(2)
                )
            ).scalars()
            found: set[tuple[str | None, str | None]] = {(a, None) for a in named}
            anonymous = (
                await conn.execute(
                    select(UpdateRow.connection_id)
                    .where(*where, UpdateRow.author.is_(None))
                    .distinct()
                    .limit(2)
                )
            ).scalars()
            found.update((None, c) for c in anonymous)
        return found

    async def checkpoint_seqs(self, doc_id: int) -> list[int]:
        """Every checkpoint's ``upto_seq``, ascending."""
        async with self.store.connect() as conn:
            seqs = await conn.execute(
                select(CheckpointRow.upto_seq)
                .where(CheckpointRow.doc_id == doc_id)
                .order_by(CheckpointRow.upto_seq)
            )
            return list(seqs.scalars())

    async def storage(self, doc_id: int) -> Storage:
        """How much the document's log and checkpoints take."""
        async with self._snapshot() as conn:
            rows, update_bytes = (
                await conn.execute(
                    select(
                        func.count(), func.coalesce(func.sum(func.length(UpdateRow.data)), 0)
                    ).where(UpdateRow.doc_id == doc_id)
                )
            ).one()
            checkpoints, checkpoint_bytes = (
                await conn.execute(
                    select(
                        func.count(), func.coalesce(func.sum(func.length(CheckpointRow.state)), 0)
                    ).where(CheckpointRow.doc_id == doc_id)
                )
            ).one()
        return Storage(rows, update_bytes, checkpoints, checkpoint_bytes)

    # -- named versions --

    async def named_versions(self, doc_id: int) -> list[NamedVersion]:
        """A document's named versions, newest version first."""
        async with self.store.connect() as conn:
            rows = await conn.execute(
                select(
                    NamedVersionRow.id,
                    NamedVersionRow.seq,
                    NamedVersionRow.name,
                    NamedVersionRow.created_ms,
                    NamedVersionRow.author,
                )
                .where(NamedVersionRow.doc_id == doc_id)
                .order_by(NamedVersionRow.seq.desc(), NamedVersionRow.id.desc())
            )
            return [NamedVersion(*row) for row in rows]

    async def add_named_version(
        self, doc_id: int, seq: int, name: str, author: str | None
    ) -> NamedVersion | None:
        """Label version ``seq``; ``None`` if the document already has that name."""
        created_ms = now_ms()
        try:
            async with self.store.begin() as conn:
                result = await conn.execute(
                    insert(NamedVersionRow).values(
                        doc_id=doc_id, seq=seq, name=name, created_ms=created_ms, author=author
                    )
                )
                new_id = result.inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None
        return NamedVersion(int(new_id[0]), seq, name, created_ms, author)

    async def delete_named_version(self, doc_id: int, version_id: int) -> bool:
        """Remove a label; ``False`` if there was none with that id."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                delete(NamedVersionRow).where(
                    NamedVersionRow.doc_id == doc_id, NamedVersionRow.id == version_id
                )
            )
        return bool(result.rowcount)

    # -- compaction: the one rewrite of the log (see collab.history.compaction) --

    async def row_infos(
        self, doc_id: int, upto: int
    ) -> list[tuple[int, int, str | None, str | None, int]]:
        """(seq, created_ms, author, connection_id, bytes) of rows up to ``upto``."""
        async with self.store.connect() as conn:
            rows = await conn.execute(
                select(
                    UpdateRow.seq,
                    UpdateRow.created_ms,
                    UpdateRow.author,
                    UpdateRow.connection_id,
                    func.length(UpdateRow.data),
                )
                .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= upto)
                .order_by(UpdateRow.seq)
            )
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def first_seq_after(self, doc_id: int, ms: int) -> int | None:
        """The first seq stored after time ``ms`` (the one after ``seq_at(ms)``)."""
        before = await self.seq_at(doc_id, ms)
        async with self.store.connect() as conn:
            seq = (
                await conn.execute(
                    select(func.min(UpdateRow.seq)).where(
                        UpdateRow.doc_id == doc_id, UpdateRow.seq > before
                    )
                )
            ).scalar()
        return None if seq is None else int(seq)

    async def replace_runs(self, doc_id: int, runs: list[MergedRun]) -> bool:
        """Replace each run's rows by its merged row, all in one transaction.

        Each run must still consist of exactly the rows planned (another compaction may
        have got there first); otherwise nothing is changed and ``False`` returned.
        """
        async with self.store.connect(bounded=False) as conn:
            async with conn.begin() as transaction:
                for run in runs:
                    deleted = await conn.execute(
                        delete(UpdateRow).where(
                            UpdateRow.doc_id == doc_id,
                            UpdateRow.seq >= run.first_seq,
                            UpdateRow.seq <= run.last_seq,
                        )
                    )
                    if deleted.rowcount != run.rows:
                        await transaction.rollback()
                        return False
                await conn.execute(
                    insert(UpdateRow),
                    [
                        {
                            "doc_id": doc_id,
                            "seq": run.last_seq,
                            "created_ms": run.created_ms,
                            "data": run.data,
                            "connection_id": run.connection_id,
                            "author": run.author,
                            "inserted": run.inserted,
                            "deleted": run.deleted,
                        }
                        for run in runs
                    ],
                )
        return True

    async def drop_checkpoints(self, doc_id: int, seqs: list[int]) -> None:
        """Delete the checkpoints at ``seqs`` (never the newest: the caller checked)."""
        async with self.store.begin(bounded=False) as conn:
            for start in range(0, len(seqs), 500):
                await conn.execute(
                    delete(CheckpointRow).where(
                        CheckpointRow.doc_id == doc_id,
                        CheckpointRow.upto_seq.in_(seqs[start : start + 500]),
                    )
                )

    async def record_compaction(self, doc_id: int, **values: int) -> None:
        """Remember one compaction (``compactions`` table)."""
        async with self.store.begin() as conn:
            await conn.execute(
                insert(CompactionRow).values(doc_id=doc_id, ran_ms=now_ms(), **values)
            )

    async def vacuum(self) -> None:
        """Give the space freed by compaction back to the file system (SQLite only)."""
        async with self.store.connect(bounded=False) as conn:
            if conn.dialect.name == "sqlite":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM")
