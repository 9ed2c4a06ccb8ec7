"""Dump and load against real servers and real SQLite files: a dump loaded into a fresh
database is served with the same text and the same update rows, and damaged or
conflicting loads are refused clearly."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collab.config import Config
from collab.http.state import HUB
from collab.tools.cli import main
from tests.conftest import editor, eventually, start_server

Rows = list[tuple[Any, ...]]


def _query(db: Path | str, sql: str, *args: Any) -> Rows:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def query(db: Path | str, sql: str, *args: Any) -> Rows:
    """Run one query in a worker thread (the event loop must not block)."""
    return await asyncio.to_thread(_query, db, sql, *args)


async def run_cli(*argv: str) -> int:
    """Run the ``collab`` command line in a worker thread, as a separate process would."""
    return await asyncio.to_thread(main, list(argv))


def _execute(db: Path | str, sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def _history(db: Path | str) -> dict[str, Rows]:
    """Every table of document history, by name, in a comparable order."""
    tables = {row[0] for row in _query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    out = {
        "documents": _query(db, "SELECT name, created_ms FROM documents ORDER BY name"),
        "updates": _query(
            db,
            "SELECT d.name, u.seq, u.created_ms, u.data, u.author, u.connection_id "
            "FROM updates u JOIN documents d ON d.id = u.doc_id ORDER BY d.name, u.seq",
        ),
        "checkpoints": _query(
            db,
            "SELECT d.name, c.upto_seq, c.created_ms, c.state "
            "FROM checkpoints c JOIN documents d ON d.id = c.doc_id ORDER BY d.name, c.upto_seq",
        ),
    }
    if "named_versions" in tables:
        out["named_versions"] = _query(
            db,
            "SELECT d.name, v.seq, v.name, v.created_ms, v.author "
            "FROM named_versions v JOIN documents d ON d.id = v.doc_id ORDER BY d.name, v.seq",
        )
    return out


async def _write_documents(
    config: Config, session: aiohttp.ClientSession, texts: dict[str, list[tuple[str, str]]]
) -> None:
    """Type each document's (author, chunk) pairs through a real server, then stop it."""
    async with start_server(config) as server:
        hub = server.app[HUB]
        for room, edits in texts.items():
            for count, (author, chunk) in enumerate(edits, 1):
                async with editor(session, server.url(room, f"user={author}")) as e:
                    e.text += chunk  # one update each: the room's seq counts them
                    await eventually(lambda: hub.rooms[room].seq == count)
        await hub.store.flush()


async def served_texts(
    config: Config, session: aiohttp.ClientSession, rooms: list[str]
) -> list[str]:
    """The text of each of ``rooms``, as a server on ``config`` serves it."""
    async with start_server(config) as server:
        out = []
        for room in rooms:
            async with editor(session, server.url(room)) as e:
                out.append(str(e))
        return out


async def test_dump_and_load_keep_text_and_history(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Dump then load into a fresh database: identical update rows, checkpoints, named
    versions and document times, and a server on it serves identical text."""
    source = config.replace(checkpoint_updates=5)
    texts = {
        "team/notes": [("alice", "hello "), ("bob", "world"), ("alice", "!")] * 4,
        "team/ünïcode ✓": [("carol", "ü")] * 7,
        "empty-ish": [("dave", "x")],
    }
    await _write_documents(source, session, texts)
    tables = {r[0] for r in await query(source.db, "SELECT name FROM sqlite_master")}
    if "named_versions" in tables:
        await asyncio.to_thread(
            _execute,
            source.db,
            "INSERT INTO named_versions (doc_id, seq, name, created_ms, author) "
            "SELECT id, 3, 'draft', 1700000000000, 'alice' FROM documents "
            "WHERE name = 'team/notes'",
        )
    original = await asyncio.to_thread(_history, source.db)
    assert len(original["checkpoints"]) >= 2
    dumped = tmp_path / "all.jsonl.gz"
    assert await run_cli("dump", "--db", source.db, "--out", str(dumped)) == 0
    fresh = tmp_path / "fresh.db"
    assert await run_cli("load", str(dumped), "--db", str(fresh)) == 0
    assert await asyncio.to_thread(_history, fresh) == original
    rooms = list(texts)
    served = await served_texts(config.replace(db=str(fresh)), session, rooms)
    assert served == await served_texts(source, session, rooms)
    assert served[0] == "hello world!" * 4


async def test_dump_pipes_into_load(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """`collab dump --out - | collab load -` moves documents through a pipe between two
    real processes, the summary going to stderr so it stays out of the stream."""
    await _write_documents(config, session, {"piped": [("ann", "through "), ("bo", "a pipe")]})
    fresh = tmp_path / "fresh.db"
    collab = f"{shlex.quote(sys.executable)} -m collab"
    shell = await asyncio.create_subprocess_shell(
        f"{collab} dump --db {shlex.quote(config.db)} --out - | "
        f"{collab} load - --db {shlex.quote(str(fresh))}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await shell.communicate()
    assert shell.returncode == 0, err.decode()
    assert "loaded 1 documents (2 updates" in out.decode()
    assert "dumped 1 documents (2 updates" in err.decode()
    assert await asyncio.to_thread(_history, fresh) == await asyncio.to_thread(_history, config.db)
    piped = await served_texts(config.replace(db=str(fresh)), session, ["piped"])
    assert piped == ["through a pipe"]


async def test_dump_format_is_documented_json_lines(config: Config, tmp_path: Path) -> None:
    """A dump is JSON Lines: a header, then per document its record, rows and end record,
    then an end record; blobs are base64."""
    async with start_server(config):
        pass  # an empty, current database
    out = tmp_path / "empty.jsonl"
    assert await run_cli("dump", "--db", config.db, "--out", str(out)) == 0
    lines = [json.loads(line) for line in (await asyncio.to_thread(out.read_text)).splitlines()]
    assert [line["type"] for line in lines] == ["header", "end"]
    assert (lines[0]["format"], lines[0]["version"], lines[1]["documents"]) == (
        "collab-dump",
        1,
        0,
    )


async def test_load_refuses_skips_replaces_and_renames(
    config: Config,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An existing document stops a load before anything is written, unless
    --skip-existing (left alone) or --replace (history swapped); --rename loads it anew."""
    await _write_documents(config, session, {"a": [("ann", "from dump")], "b": [("bo", "b")]})
    dumped = tmp_path / "ab.jsonl"
    assert await run_cli("dump", "a", "b", "--db", config.db, "--out", str(dumped)) == 0
    other = config.replace(db=str(tmp_path / "other.db"))
    await _write_documents(other, session, {"a": [("zed", "already here")]})
    before = await asyncio.to_thread(_history, other.db)

    assert await run_cli("load", str(dumped), "--db", other.db) == 1
    assert "already in the database: a" in capsys.readouterr().err
    assert await asyncio.to_thread(_history, other.db) == before  # not even "b"

    assert await run_cli("load", str(dumped), "--db", other.db, "--skip-existing") == 0
    assert "skipped 1 that exist: a" in capsys.readouterr().out
    assert await served_texts(other, session, ["a", "b"]) == ["already here", "b"]

    assert await run_cli("load", str(dumped), "--db", other.db, "--replace") == 0
    assert await served_texts(other, session, ["a", "b"]) == ["from dump", "b"]
    a_rows = await query(
        other.db, "SELECT author FROM updates JOIN documents d ON d.id = doc_id WHERE d.name='a'"
    )
    assert a_rows == [("ann",)]

    renamed = ["--rename", "a=copies/a", "--rename", "b=copies/b"]
    assert await run_cli("load", str(dumped), "--db", other.db, *renamed) == 0
    assert await served_texts(other, session, ["copies/a", "copies/b"]) == ["from dump", "b"]


async def test_cut_short_dump_loads_nothing_of_the_last_document(
    config: Config,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dump cut off mid-document is refused: into an existing database, documents
    before the cut are loaded, the one being read is not, and the command fails."""
    await _write_documents(config, session, {"a": [("x", "aa")], "b": [("y", "bb")] * 3})
    dumped = tmp_path / "ab.jsonl"
    assert await run_cli("dump", "--db", config.db, "--out", str(dumped)) == 0
    lines = (await asyncio.to_thread(dumped.read_text)).splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"name":"b"' in line) + 2
    truncated = tmp_path / "cut.jsonl.gz"
    await asyncio.to_thread(truncated.write_bytes, gzip.compress("".join(lines[:cut]).encode()))
    target = tmp_path / "target.db"
    assert await run_cli("db", "upgrade", "--db", str(target)) == 0
    assert await run_cli("load", str(truncated), "--db", str(target)) == 1
    assert "ends inside document 'b'" in capsys.readouterr().err
    assert await query(target, "SELECT name FROM documents") == [("a",)]


async def test_a_failed_load_removes_the_database_it_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`collab load` of a file that is not a dump into a new --db path fails and leaves no
    database (nor its -wal, -shm or lock file) behind."""
    bad = tmp_path / "bad.jsonl"
    await asyncio.to_thread(bad.write_text, '{"type": "document", "name": "a"}\n')
    assert await run_cli("load", str(bad), "--db", str(tmp_path / "new.db")) == 1
    assert "not a collab dump" in capsys.readouterr().err
    assert sorted(await asyncio.to_thread(os.listdir, tmp_path)) == ["bad.jsonl"]


async def test_dump_of_unknown_document_fails(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Naming a document that does not exist is an error, and writes no file."""
    async with start_server(config):
        pass
    out = tmp_path / "x.jsonl"
    assert await run_cli("dump", "nope", "--db", config.db, "--out", str(out)) == 1
    assert "no such document: nope" in capsys.readouterr().err
    assert not await asyncio.to_thread(out.exists)


async def test_a_document_keeps_its_lineage_through_dump_and_load(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The dump carries each document's lineage: loaded into another database it is the
    same history (its clients keep syncing), and loaded over itself (a restore) nothing
    is retired; only a replacement by another history retires one, and loading a retired
    lineage back makes it current again."""
    await _write_documents(config, session, {"a": [("ann", "a")], "b": [("bo", "b")]})
    dumped = tmp_path / "ab.jsonl"
    assert await run_cli("dump", "--db", config.db, "--out", str(dumped)) == 0
    lineages: dict[str, str] = dict(await query(config.db, "SELECT name, lineage FROM documents"))
    assert all(lineages.values()) and lineages["a"] != lineages["b"]
    other = config.replace(db=str(tmp_path / "other.db"))
    assert await run_cli("load", str(dumped), "--db", other.db) == 0
    assert dict(await query(other.db, "SELECT name, lineage FROM documents")) == lineages
    assert await run_cli("load", str(dumped), "--db", other.db, "--replace") == 0
    assert await query(other.db, "SELECT count(*) FROM retired_lineages") == [(0,)]
    renamed = ["--rename", "b=a", "--replace"]
    only_b = tmp_path / "b.jsonl"
    assert await run_cli("dump", "b", "--db", config.db, "--out", str(only_b)) == 0
    assert await run_cli("load", str(only_b), "--db", other.db, *renamed) == 0
    retired = await query(other.db, "SELECT name, lineage, reason FROM retired_lineages")
    assert retired == [("a", lineages["a"], "replaced")]
    assert await query(other.db, "SELECT lineage FROM documents WHERE name = 'a'") == [
        (lineages["b"],)
    ]
    # a's own dump loaded back: its lineage is current again, so its holders are not
    # stale any more, and the history it replaces is retired in turn.
    assert await run_cli("load", str(dumped), "--db", other.db, "--replace") == 0
    retired = await query(other.db, "SELECT name, lineage, reason FROM retired_lineages")
    assert retired == [("a", lineages["b"], "replaced")]
