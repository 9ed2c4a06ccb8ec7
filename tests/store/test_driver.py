"""The store's own sqlite3 connections and threads: ``DriverConnection`` (the writer's
transactions, statements and errors, on a real SQLite file) and ``Threads`` (calls run
in order, a failing call does not end its thread, shutdown lets queued calls finish)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Integer, bindparam, create_engine, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from collab.store.driver import DriverConnection, Threads
from collab.store.models import Base, CheckpointRow, Document


@pytest.fixture
def conn(tmp_path: Path) -> DriverConnection:
    """A writer's connection on a new SQLite file holding collab's tables."""
    raw = sqlite3.connect(tmp_path / "driver.db", check_same_thread=False)
    raw.execute("PRAGMA foreign_keys=ON")
    engine = create_engine(f"sqlite:///{tmp_path / 'driver.db'}")
    Base.metadata.create_all(engine)
    engine.dispose()
    return DriverConnection(raw, sqlite.dialect())


def _names(conn: DriverConnection) -> list[str]:
    return [r[0] for r in conn.exec_driver_sql("SELECT name FROM documents ORDER BY name").all()]


def test_a_block_commits_at_its_end(conn: DriverConnection) -> None:
    """What a ``begin()`` block writes is committed when the block ends, and traced."""
    seen: list[str] = []
    conn.trace(lambda statement, _params: seen.append(statement.split()[0]))
    with conn.begin():
        conn.exec_driver_sql(
            "INSERT INTO documents (name, created_ms) VALUES (?, ?)", [("a", 1), ("b", 2)]
        )
    assert _names(conn) == ["a", "b"]
    assert seen == ["INSERT", "COMMIT", "SELECT"]


def test_a_failing_block_rolls_back_and_raises_sqlalchemy_errors(conn: DriverConnection) -> None:
    """A driver error inside the block rolls everything in it back and is raised as
    SQLAlchemy's subclass of ``DBAPIError`` (a unique name taken: ``IntegrityError``)."""
    with conn.begin():
        conn.exec_driver_sql("INSERT INTO documents (name, created_ms) VALUES (?, ?)", ("a", 1))
    with pytest.raises(IntegrityError), conn.begin():
        conn.exec_driver_sql("INSERT INTO documents (name, created_ms) VALUES (?, ?)", ("b", 2))
        conn.exec_driver_sql("INSERT INTO documents (name, created_ms) VALUES (?, ?)", ("a", 3))
    assert _names(conn) == ["a"]
    with pytest.raises(OperationalError):
        conn.exec_driver_sql("SELECT nothing FROM nowhere")


def test_compiled_statements_run_with_their_parameters(conn: DriverConnection) -> None:
    """SQLAlchemy statements are compiled for the dialect: an insert of several rows, a
    select with an ``IN`` list (expanded to one mark per value) and plain binds."""
    with conn.begin():
        conn.execute(
            insert(Document),
            [{"name": n, "created_ms": i} for i, n in enumerate(("x", "y", "z"))],
        )
    ids = dict(conn.execute(select(Document.name, Document.id)).all())
    assert sorted(ids) == ["x", "y", "z"]
    found = conn.execute(
        select(Document.name).where(Document.id.in_([ids["x"], ids["z"]])).order_by(Document.name)
    )
    assert found.scalars() == ["x", "z"]
    with conn.begin():
        conn.execute(
            insert(CheckpointRow),
            [{"doc_id": ids["y"], "upto_seq": 4, "created_ms": 5, "state": b"\x00\x00"}],
        )
    row = conn.execute(
        select(CheckpointRow.state).where(
            CheckpointRow.doc_id == bindparam("d", ids["y"], type_=Integer)
        )
    ).first()
    assert row is not None and bytes(row[0]) == b"\x00\x00"
    assert conn.execute(select(Document.id).where(Document.name == "none")).first() is None


def test_threads_run_calls_in_order_and_outlive_a_failure() -> None:
    """One thread runs its calls oldest first; a call that raises is logged and the
    next ones still run; shutdown lets every queued call finish first."""
    threads = Threads(1, "test-driver")
    done: list[int] = []
    names: set[str] = set()

    def record(i: int) -> None:
        names.add(threading.current_thread().name)
        done.append(i)

    def fail() -> None:
        raise RuntimeError("boom")

    for i in range(50):
        threads.submit(record, i)
    threads.submit(fail)
    threads.submit(record, 50)
    threads.shutdown()
    assert done == list(range(51))
    assert names == {"test-driver-0"}


def test_several_threads_share_one_queue() -> None:
    """With several threads, every call runs exactly once."""
    threads = Threads(4, "test-driver")
    lock = threading.Lock()
    done: list[int] = []

    def record(i: int) -> None:
        with lock:
            done.append(i)

    for i in range(1000):
        threads.submit(record, i)
    threads.shutdown()
    assert sorted(done) == list(range(1000))
