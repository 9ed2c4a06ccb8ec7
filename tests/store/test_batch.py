"""One batch of the writer, written by ``BatchWriter`` on a real SQLite file whose schema
the migrations built: creating documents (with the rows queued under their provisional
ids), numbering, checkpoints kept once, and the recheck after a failed commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import IntegrityError

from collab.config import database_url
from collab.store import upgrade_schema
from collab.store.batch import BatchWriter
from collab.store.models import CheckpointRow, UpdateRow


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A synchronous engine on a new SQLite file at the newest schema revision."""
    path = tmp_path / "b.db"
    upgrade_schema(database_url(str(path)))
    engine = create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _update(doc_id: int, seq: int | None, data: bytes) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "seq": seq,
        "created_ms": 1,
        "data": data,
        "connection_id": None,
        "author": None,
        "inserted": None,
        "deleted": None,
    }


def _checkpoint(doc_id: int, upto_seq: int, state: bytes) -> dict[str, Any]:
    return {"doc_id": doc_id, "upto_seq": upto_seq, "created_ms": 1, "state": state}


def _create(name: str, tmp: int) -> dict[str, Any]:
    return {"name": name, "tmp": tmp, "created_ms": 1}


def _log(engine: Engine, doc_id: int) -> list[tuple[int, bytes]]:
    with engine.connect() as conn:
        query = select(UpdateRow.seq, UpdateRow.data).where(UpdateRow.doc_id == doc_id)
        return [(row[0], row[1]) for row in conn.execute(query.order_by(UpdateRow.seq))]


def test_creates_reuse_names_and_numbers_continue_the_log(engine: Engine) -> None:
    """A name created twice keeps its id, and updates without a seq get the numbers after
    the largest stored one, in the order they were queued."""
    batch = BatchWriter()
    with engine.connect() as conn:
        created = batch.write(conn, [], [], [_create("a", -1), _create("b", -2)])
        ids = {"a": created[-1], "b": created[-2]}
        assert batch.write(conn, [], [], [_create("a", -3)]) == {-3: ids["a"]}
        batch.write(conn, [_update(ids["a"], 1, b"one")], [], [])
        rows = [_update(ids["a"], None, b"two"), _update(ids["a"], None, b"three")]
        batch.write(conn, rows, [], [])
    assert [row["seq"] for row in rows] == [2, 3]
    assert _log(engine, ids["a"]) == [(1, b"one"), (2, b"two"), (3, b"three")]


def test_rows_under_a_provisional_id_are_stored_with_their_new_document(
    engine: Engine,
) -> None:
    """Updates and a checkpoint queued under a provisional id are stored under the id of
    the document the same transaction creates, and remember the provisional one."""
    batch = BatchWriter()
    with engine.connect() as conn:
        rows = [_update(-7, 1, b"one"), _update(-7, 2, b"two")]
        checkpoint = _checkpoint(-7, 2, b"state")
        created = batch.write(conn, rows, [checkpoint], [_create("new", -7)])
        stored = conn.execute(select(CheckpointRow.doc_id, CheckpointRow.upto_seq)).all()
    doc_id = created[-7]
    assert doc_id > 0
    assert [(r["doc_id"], r["_tmp"]) for r in [*rows, checkpoint]] == [(doc_id, -7)] * 3
    assert _log(engine, doc_id) == [(1, b"one"), (2, b"two")]
    assert [tuple(row) for row in stored] == [(doc_id, 2)]


def test_recheck_finds_rows_stored_with_a_document_a_failed_commit_created(
    engine: Engine,
) -> None:
    """A commit cut off at COMMIT that had created a document and stored its first rows:
    the retry reuses the document and leaves out the rows stored, whatever their ids."""
    batch = BatchWriter()
    with engine.connect() as conn:
        batch.write(conn, [_update(-1, 1, b"u1")], [], [_create("doc", -1)])
        again = [_update(-1, 1, b"u1"), _update(-1, 2, b"u2")]
        batch.recheck = True
        created = batch.write(conn, again, [], [_create("doc", -1)])
    assert _log(engine, created[-1]) == [(1, b"u1"), (2, b"u2")]


def test_a_checkpoint_is_kept_once(engine: Engine) -> None:
    """The same checkpoint twice in one batch, and again in the next, is stored once."""
    batch = BatchWriter()
    with engine.connect() as conn:
        doc_id = batch.write(conn, [], [], [_create("doc", -1)])[-1]
        twice = [_checkpoint(doc_id, 1, b"state"), _checkpoint(doc_id, 1, b"state")]
        batch.write(conn, [_update(doc_id, 1, b"u")], twice, [])
        batch.write(conn, [], [_checkpoint(doc_id, 1, b"state")], [])
        found = conn.execute(select(CheckpointRow.upto_seq, CheckpointRow.state)).all()
    assert [tuple(row) for row in found] == [(1, b"state")]


def test_recheck_skips_rows_a_failed_commit_stored(engine: Engine) -> None:
    """Rows already stored fail on the primary key; after a failure (``recheck``) they are
    left out, the rest written, and the recheck is done with."""
    batch = BatchWriter()
    with engine.connect() as conn:
        doc_id = batch.write(conn, [], [], [_create("doc", -1)])[-1]
        batch.write(conn, [_update(doc_id, 1, b"u1"), _update(doc_id, 2, b"u2")], [], [])
        again = [_update(doc_id, seq, b"u%d" % seq) for seq in (1, 2, 3)]
        with pytest.raises(IntegrityError):
            batch.write(conn, again, [], [])
        batch.recheck = True
        batch.write(conn, again, [], [])
        assert not batch.recheck
    assert _log(engine, doc_id) == [(1, b"u1"), (2, b"u2"), (3, b"u3")]
