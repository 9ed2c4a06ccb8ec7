"""One batch of the writer's rows, written in one transaction.

Owns the SQL of a group commit: creating the documents new rooms asked for, numbering the
updates queued without a seq (the next after the largest stored one), inserting the
updates through the driver's executemany, keeping only the first copy of a checkpoint,
and after a failed commit leaving out the rows that commit stored anyway. Synchronous: it
runs in the SQLite writer's thread, or for an async driver (asyncpg) through
``AsyncConnection.run_sync``. It never queues, retries or orders anything: ``writer.py``
decides what goes into a batch and what happens when it fails.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from collab.clock import now_ms
from collab.store.models import CheckpointRow, Document, UpdateRow

__all__ = ["BatchWriter"]


class BatchWriter:
    """Writes the writer's batches; it keeps what must outlive one batch."""

    def __init__(self) -> None:
        self.recheck = False
        """The last commit failed: it may have landed all the same (set by the writer)."""
        self._update_sql: tuple[str, tuple[str, ...]] | None = None

    def write(
        self,
        conn: Connection,
        updates: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        creates: list[str],
    ) -> dict[str, int]:
        """Write one batch in one transaction; return the ids of the documents created.

        It only reads the rows handed to it, which the event loop leaves alone until the
        commit is over, and numbers them.
        """
        created: dict[str, int] = {}
        if self.recheck and updates:
            # The previous commit failed; if it failed only after the database had made
            # it durable (a connection cut at COMMIT), its rows are there already, and
            # writing them again would fail on the primary key forever.
            updates = self._unwritten(conn, updates)
        with conn.begin():
            if creates:
                # Names another node (or an earlier batch) created already are reused.
                find = select(Document.name, Document.id).where(Document.name.in_(creates))
                existing = {row[0]: row[1] for row in conn.execute(find)}
                missing = [n for n in creates if n not in existing]
                if missing:
                    at = now_ms()
                    conn.execute(
                        insert(Document), [{"name": n, "created_ms": at} for n in missing]
                    )
                    existing.update((row[0], row[1]) for row in conn.execute(find))
                created = existing
            if updates:
                self._number(conn, updates)
                # The one statement run per keystroke's worth of rows: straight to the
                # driver's executemany, without per-row parameter processing.
                sql, columns = self._insert_update_sql(conn)
                conn.exec_driver_sql(sql, [tuple(r[c] for c in columns) for r in updates])
            if checkpoints:
                self._insert_checkpoints(conn, checkpoints)
        return created

    def _insert_checkpoints(self, conn: Connection, checkpoints: list[dict[str, Any]]) -> None:
        # The same checkpoint may be built twice (by two nodes, or by one node for two
        # reasons at once): it is the same state, so keep the first.
        fresh = []
        seen: set[tuple[int, int]] = set()
        for row in checkpoints:
            key = (row["doc_id"], row["upto_seq"])
            if key in seen:
                continue
            seen.add(key)
            found = conn.execute(
                select(CheckpointRow.upto_seq).where(
                    CheckpointRow.doc_id == row["doc_id"],
                    CheckpointRow.upto_seq == row["upto_seq"],
                )
            )
            if found.first() is None:
                fresh.append(row)
        if fresh:
            conn.execute(insert(CheckpointRow), fresh)

    def _unwritten(self, conn: Connection, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of ``updates`` with a seq of their own that are not stored yet."""
        wanted: dict[int, set[int]] = {}
        for row in updates:
            if row["seq"] is not None and not row.get("_assigned"):
                wanted.setdefault(row["doc_id"], set()).add(row["seq"])
        stored: set[tuple[int, int]] = set()
        for doc_id, seqs in wanted.items():
            found = conn.execute(
                select(UpdateRow.seq).where(
                    UpdateRow.doc_id == doc_id, UpdateRow.seq.between(min(seqs), max(seqs))
                )
            )
            stored.update((doc_id, seq) for seq in found.scalars() if seq in seqs)
        conn.rollback()  # end the read, so the write below begins its own transaction
        self.recheck = False
        return [r for r in updates if (r["doc_id"], r["seq"]) not in stored]

    def _insert_update_sql(self, conn: Connection) -> tuple[str, tuple[str, ...]]:
        if self._update_sql is None:
            compiled = insert(UpdateRow).compile(dialect=conn.dialect)
            names = compiled.positiontup
            if names is None:  # a dialect with named parameters: make them positional
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            self._update_sql = (compiled.string, tuple(names))
        return self._update_sql

    def _number(self, conn: Connection, updates: list[dict[str, Any]]) -> bool:
        """Give rows queued with ``seq=None`` the next numbers of their document's log;
        return whether there were any."""
        unnumbered = [row for row in updates if row["seq"] is None or row.get("_assigned")]
        if not unnumbered:
            return False
        docs = {row["doc_id"] for row in unnumbered}
        tops = conn.execute(
            select(UpdateRow.doc_id, func.max(UpdateRow.seq))
            .where(UpdateRow.doc_id.in_(docs))
            .group_by(UpdateRow.doc_id)
        )
        next_seq = dict.fromkeys(docs, 1)
        next_seq.update({doc_id: (top or 0) + 1 for doc_id, top in tops})
        for row in unnumbered:
            row["seq"] = next_seq[row["doc_id"]]
            row["_assigned"] = True  # renumbered again if this commit is retried
            next_seq[row["doc_id"]] += 1
        return True
