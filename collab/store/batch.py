"""One batch of the writer's rows, written in one transaction.

Owns the SQL of a group commit: creating the documents new rooms asked for (a name
another node or an earlier commit stored is reused, never an error: ``ON CONFLICT DO
NOTHING``, then one read of the ids) and giving the rows queued under their provisional
ids the real ones; numbering the updates queued without a seq (the next after the
largest stored one); inserting the updates through the driver's executemany; keeping
only the first copy of a checkpoint; and after a failed commit leaving out the rows that
commit stored anyway. Synchronous: it runs in the SQLite writer's thread, or for an
async driver (asyncpg) through ``AsyncConnection.run_sync``. It never queues, retries or
orders anything: ``writer.py`` decides what goes into a batch and what happens when it
fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Integer, String, any_, bindparam, func, insert, select
from sqlalchemy.engine import Connection as SQLConnection

from collab.store.driver import DriverConnection
from collab.store.models import CheckpointRow, Document, UpdateRow, new_lineage

__all__ = ["BatchWriter"]

_NAMES_PER_QUERY = 500  # names per IN (...) list: well under every engine's limit
_CHECKPOINT_COLUMNS = ("doc_id", "upto_seq", "created_ms", "state")

Connection = SQLConnection | DriverConnection
"""What a batch is written on: the SQLite writer thread's own connection, or (asyncpg)
a SQLAlchemy connection through ``run_sync``."""


class BatchWriter:
    """Writes the writer's batches; it keeps what must outlive one batch."""

    def __init__(self) -> None:
        self.recheck = False
        """The last commit failed: it may have landed all the same (set by the writer)."""
        self._update_sql: tuple[str, Any] | None = None
        self._tops_sql: str | None = None
        self._lock_sql: str | None = None
        self._create_text: str | None = None
        self._ids_text: str | None = None
        self._checkpoint_text: tuple[str | None, str, Any] | None = None

    def write(
        self,
        conn: Connection,
        updates: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        creates: list[dict[str, Any]],
    ) -> dict[int, int]:
        """Write one batch in one transaction; return the ids of the documents created,
        by provisional id.

        ``creates`` are ``{"name", "tmp", "created_ms"}``: the documents to create, which
        the rows queued under provisional id ``tmp`` refer to; each such row gets the real
        id (its provisional one kept as ``_tmp``, which the writer puts back if the
        commit fails). It only reads and numbers the rows handed to it, which the event
        loop leaves alone until the commit is over.
        """
        if self.recheck and updates:
            # The previous commit failed; if it failed only after the database had made
            # it durable (a connection cut at COMMIT), its rows are there already, and
            # writing them again would fail on the primary key forever. Documents it
            # created are there too: their rows are looked up under the real ids.
            if creates:
                _resolve(updates, self._ids(conn, creates), missing_ok=True)
            updates = self._unwritten(conn, updates)
        created: dict[int, int] = {}
        with conn.begin():
            if creates:
                created = self._create(conn, creates)
                _resolve(updates, created)
                _resolve(checkpoints, created)
            if updates:
                self._number(conn, updates)
                # The one statement run per keystroke's worth of rows: straight to the
                # driver's executemany, without per-row parameter processing.
                sql, values = self._insert_update_sql(conn)
                conn.exec_driver_sql(sql, list(map(values, updates)))
            if checkpoints:
                self._insert_checkpoints(conn, checkpoints)
        return created

    def _create(self, conn: Connection, creates: list[dict[str, Any]]) -> dict[int, int]:
        """Insert the documents of ``creates`` that no one stored yet; their ids, by
        provisional id."""
        rows = [
            {"name": c["name"], "created_ms": c["created_ms"], "lineage": new_lineage()}
            for c in creates
        ]
        dialect = conn.dialect.name
        if dialect == "sqlite" or dialect == "postgresql":
            # Two nodes creating the same new document at once: on PostgreSQL the second
            # insert waits for the first transaction and then does nothing, and the read
            # below (a statement of its own, so a snapshot of its own) sees its row.
            # Straight to the driver's executemany, as the updates go: a reconnect storm
            # creates a document per join.
            sql = self._create_sql(conn)
            conn.exec_driver_sql(sql, [(r["name"], r["created_ms"], r["lineage"]) for r in rows])
        else:
            stored = self._ids(conn, creates)
            missing = [row for c, row in zip(creates, rows) if c["tmp"] not in stored]
            if missing:
                conn.execute(insert(Document), missing)
        ids = self._ids(conn, creates)
        if len(ids) != len(creates):
            raise RuntimeError("a document created in this transaction cannot be read back")
        return ids

    def _create_sql(self, conn: Connection) -> str:
        """``INSERT ... ON CONFLICT DO NOTHING`` of (name, created_ms, lineage), compiled
        once for the dialect."""
        if self._create_text is None:
            values: dict[str, Any] = {c: bindparam(c) for c in ("name", "created_ms", "lineage")}
            if conn.dialect.name == "sqlite":
                from sqlalchemy.dialects import sqlite

                statement: Any = sqlite.insert(Document).values(values).on_conflict_do_nothing()
            else:
                from sqlalchemy.dialects import postgresql

                statement = (
                    postgresql.insert(Document)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            compiled = statement.compile(dialect=conn.dialect)
            if compiled.positiontup != ["name", "created_ms", "lineage"]:
                raise RuntimeError(f"unexpected parameters {compiled.positiontup}")
            self._create_text = compiled.string
        return self._create_text

    def _ids(self, conn: Connection, creates: list[dict[str, Any]]) -> dict[int, int]:
        """The stored ids of the documents named in ``creates``, by provisional id."""
        tmp = {c["name"]: c["tmp"] for c in creates}
        names = list(tmp)
        ids: dict[int, int] = {}
        for start in range(0, len(names), _NAMES_PER_QUERY):
            ids.update(
                (tmp[name], doc_id)
                for name, doc_id in self._names_to_ids(
                    conn, names[start : start + _NAMES_PER_QUERY]
                )
            )
        return ids

    def _names_to_ids(self, conn: Connection, names: list[str]) -> Sequence[Any]:
        """``(name, id)`` of the stored documents among ``names``: on SQLite and
        PostgreSQL one statement straight to the driver (``IN`` with as many ``?`` as
        names; ``= ANY($1)`` with an array), no SQLAlchemy compilation per commit."""
        dialect = conn.dialect.name
        if dialect == "sqlite":
            marks = ",".join("?" * len(names))
            # Only "?" marks are formatted in: the names travel as parameters.
            sql = f"SELECT name, id FROM documents WHERE name IN ({marks})"
            return conn.exec_driver_sql(sql, tuple(names)).all()
        if dialect == "postgresql":
            if self._ids_text is None:
                from sqlalchemy.dialects.postgresql import ARRAY

                wanted = bindparam("names", type_=ARRAY(String))
                query = select(Document.name, Document.id).where(Document.name == any_(wanted))
                self._ids_text = query.compile(dialect=conn.dialect).string
            return conn.exec_driver_sql(self._ids_text, (names,)).all()
        return conn.execute(
            select(Document.name, Document.id).where(Document.name.in_(names))
        ).all()

    def _insert_checkpoints(self, conn: Connection, checkpoints: list[dict[str, Any]]) -> None:
        # The same checkpoint may be built twice (by two nodes, or by one node for two
        # reasons at once): it is the same state, so keep the first. On SQLite and
        # PostgreSQL the insert itself does nothing for a key that is stored (a shutdown
        # writes a checkpoint per room: one statement, not a query per checkpoint).
        exists, insert_sql, values = self._checkpoint_sql(conn)
        if exists is None:
            conn.exec_driver_sql(insert_sql, list(map(values, checkpoints)))
            return
        fresh = []
        seen: set[tuple[int, int]] = set()
        for row in checkpoints:
            key = (row["doc_id"], row["upto_seq"])
            if key in seen:
                continue
            seen.add(key)
            if not conn.exec_driver_sql(exists, key).all():
                fresh.append(row)
        if fresh:
            conn.exec_driver_sql(insert_sql, list(map(values, fresh)))

    def _checkpoint_sql(self, conn: Connection) -> tuple[str | None, str, Any]:
        """A checkpoint's insert, compiled once for the dialect (every unloaded room
        writes one), and its parameters of a row dict; with the existence check (by
        doc_id, upto_seq) it needs first, or ``None`` on SQLite and PostgreSQL, where the
        insert skips a stored key itself (``ON CONFLICT DO NOTHING``)."""
        if self._checkpoint_text is None:
            dialect = conn.dialect.name
            statement: Any = insert(CheckpointRow)
            if dialect == "sqlite":
                from sqlalchemy.dialects import sqlite

                statement = sqlite.insert(CheckpointRow).on_conflict_do_nothing()
            elif dialect == "postgresql":
                from sqlalchemy.dialects import postgresql

                statement = postgresql.insert(CheckpointRow).on_conflict_do_nothing(
                    index_elements=["doc_id", "upto_seq"]
                )
            stored = statement.compile(dialect=conn.dialect, column_keys=list(_CHECKPOINT_COLUMNS))
            exists = None
            if dialect != "sqlite" and dialect != "postgresql":
                query = select(CheckpointRow.upto_seq).where(
                    CheckpointRow.doc_id == bindparam("doc_id", type_=Integer),
                    CheckpointRow.upto_seq == bindparam("upto_seq", type_=Integer),
                )
                found = query.compile(dialect=conn.dialect)
                if found.positiontup != ["doc_id", "upto_seq"]:
                    raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
                exists = found.string
            if stored.positiontup is None:
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            self._checkpoint_text = (exists, stored.string, itemgetter(*stored.positiontup))
        return self._checkpoint_text

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

    def _insert_update_sql(self, conn: Connection) -> tuple[str, Any]:
        """The insert of an update row, and what makes a row dict its parameters (an
        ``itemgetter`` of the columns, in the statement's order: a tuple built in C)."""
        if self._update_sql is None:
            compiled = insert(UpdateRow).compile(dialect=conn.dialect)
            names = compiled.positiontup
            if names is None:  # a dialect with named parameters: make them positional
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            self._update_sql = (compiled.string, itemgetter(*names))
        return self._update_sql

    def _number(self, conn: Connection, updates: list[dict[str, Any]]) -> bool:
        """Give rows queued with ``seq=None`` the next numbers of their document's log;
        return whether there were any."""
        unnumbered = [row for row in updates if row["seq"] is None or row.get("_assigned")]
        if not unnumbered:
            return False
        docs = {row["doc_id"] for row in unnumbered}
        if conn.dialect.name == "postgresql":
            self._lock(conn, docs)
        tops = self._tops(conn, docs)
        next_seq = dict.fromkeys(docs, 1)
        next_seq.update({doc_id: (top or 0) + 1 for doc_id, top in tops})
        for row in unnumbered:
            row["seq"] = next_seq[row["doc_id"]]
            row["_assigned"] = True  # renumbered again if this commit is retried
            next_seq[row["doc_id"]] += 1
        return True

    def _lock(self, conn: Connection, docs: set[int]) -> None:
        """PostgreSQL: lock the rows of ``docs`` in ``documents`` until the commit, in id
        order, before reading their largest seqs.

        Two nodes numbering the same document at once both read the same largest seq and
        one commit fails on the primary key, to be renumbered and retried: in a fan-out
        with each room split over two nodes that was half of all commits
        (``collab_store_seq_races``). With the row lock the second transaction waits for
        the first to commit, and its next statement (read committed: a snapshot of its
        own) sees the numbers the first one took. Locked in id order, so two commits
        never wait for each other in a cycle. An ``IntegrityError`` stays possible (a
        commit whose lock was lost to a failover) and is handled as before.
        """
        if self._lock_sql is None:
            from sqlalchemy.dialects.postgresql import ARRAY

            ids = bindparam("ids", type_=ARRAY(Integer))
            query = (
                select(Document.id)
                .where(Document.id == any_(ids))
                .order_by(Document.id)
                .with_for_update()
            )
            self._lock_sql = query.compile(dialect=conn.dialect).string
        conn.exec_driver_sql(self._lock_sql, (sorted(docs),)).all()

    def _tops(self, conn: Connection, docs: set[int]) -> Sequence[Any]:
        """``(doc_id, largest stored seq)`` of each of ``docs`` that has updates.

        On PostgreSQL (where several nodes share the log, so every commit numbers) one
        statement of fixed text with the ids as an array: asyncpg prepares it once. An
        ``IN (...)`` list is new SQL for every count of documents, compiled by SQLAlchemy
        and prepared by asyncpg each time: half of a commit's CPU (docs/performance.md).
        """
        if conn.dialect.name != "postgresql":
            return conn.execute(
                select(UpdateRow.doc_id, func.max(UpdateRow.seq))
                .where(UpdateRow.doc_id.in_(docs))
                .group_by(UpdateRow.doc_id)
            ).all()
        if self._tops_sql is None:
            from sqlalchemy.dialects.postgresql import ARRAY

            ids = bindparam("ids", type_=ARRAY(Integer))
            query = (
                select(UpdateRow.doc_id, func.max(UpdateRow.seq))
                .where(UpdateRow.doc_id == any_(ids))
                .group_by(UpdateRow.doc_id)
            )
            self._tops_sql = query.compile(dialect=conn.dialect).string
        return conn.exec_driver_sql(self._tops_sql, (list(docs),)).all()


def _resolve(rows: list[dict[str, Any]], ids: dict[int, int], *, missing_ok: bool = False) -> None:
    """Give each row queued under a provisional id (negative) the real one from ``ids``,
    keeping the provisional one as ``_tmp``."""
    for row in rows:
        tmp = row["doc_id"]
        if tmp < 0:
            if missing_ok and tmp not in ids:
                continue
            row["_tmp"] = tmp
            row["doc_id"] = ids[tmp]
