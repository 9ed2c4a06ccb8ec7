"""``collab history | show | export | compact`` on a database a real server wrote, and
compaction's promise: every read stays exact, named versions and kept checkpoints stay
versions, and a live server never notices."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text, XmlFragment

from collab.config import Config, database_url
from collab.history.service import History
from collab.store import Store
from collab.sync.protocol import encode_update
from collab.tools.cli import main
from tests.conftest import ROOT, editor, eventually, raw_client, start_server
from tests.http.test_history import get, last_seq, post, send
from tests.richdoc import add, el
from tests.trace import Trace, trace

N_ALICE, N_BOB = 1200, 300
NAMED = 700


def _config(db: Path) -> Config:
    return Config(
        db=str(db),
        commit_interval=0.01,
        room_grace=0.2,
        max_updates_per_second=0,
        checkpoint_updates=100,
    )


@pytest.fixture
async def written(tmp_path: Path, session: aiohttp.ClientSession) -> tuple[Path, Trace]:
    """A database holding room "paper": 1,200 keystrokes by alice, then 300 by bob, a
    checkpoint every 100 updates, and version 700 named "draft"."""
    db = tmp_path / "collab.db"
    sample = trace(N_ALICE + N_BOB)
    async with start_server(_config(db)) as server:
        await send(session, server, "paper", sample.updates[:N_ALICE], user="alice")
        await send(session, server, "paper", sample.updates[N_ALICE:], user="bob")
        status, _ = await post(
            session, server, "/api/docs/paper/named-versions", {"name": "draft", "seq": NAMED}
        )
        assert status == 201
    return db, sample


async def _run(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def test_history_show_export(
    written: tuple[Path, Trace], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands print the timeline, any version's text, and export every format."""
    db, sample = written
    assert await _run(["history", "paper", "--db", str(db), "--gap", "1h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("paper: 1500 updates in 1500 rows;")
    assert "1201-1500" in out and "bob" in out and "[draft]" in out

    assert await _run(["show", "paper", "--seq", "640", "--db", str(db)]) == 0
    assert capsys.readouterr().out == sample.texts[640] + "\n"

    target = tmp_path / "v.yjs"
    assert (
        await _run(
            ["export", "paper", "--format", "yjs", "--seq", "900", "-o", str(target)]
            + ["--db", str(db)]
        )
        == 0
    )
    doc: Doc[Any] = Doc()
    doc.apply_update(target.read_bytes())
    assert str(doc.get(ROOT, type=Text)) == sample.texts[900]

    assert await _run(["export", "paper", "--format", "json", "--db", str(db)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert (exported["seq"], exported["content"]) == (1500, {ROOT: sample.texts[1500]})


async def test_history_commands_report_errors(
    written: tuple[Path, Trace], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown documents and versions end with exit code 1 and a clear message."""
    db, _ = written
    assert await _run(["show", "nope", "--db", str(db)]) == 1
    assert "no document named 'nope'" in capsys.readouterr().err
    assert await _run(["show", "paper", "--seq", "9999", "--db", str(db)]) == 1
    assert "no version 9999" in capsys.readouterr().err
    assert await _run(["show", "paper", "--at", "noon", "--db", str(db)]) == 1
    assert "bad time" in capsys.readouterr().err
    assert await _run(["compact", "--older-than", "soon", "--db", str(db)]) == 2


def _counts(db: Path) -> tuple[int, list[int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM updates").fetchone()[0]
        checkpoints = [r[0] for r in conn.execute("SELECT upto_seq FROM checkpoints ORDER BY 1")]
    return int(rows), checkpoints


async def test_compaction_keeps_reads_exact(
    written: tuple[Path, Trace], capsys: pytest.CaptureFixture[str]
) -> None:
    """After compaction every seq reads as the newest kept version at or before it, that
    version is exactly the trace's text, named and kept-checkpoint versions are exact, and
    the history shrank."""
    db, sample = written
    rows_before, checkpoints_before = await asyncio.to_thread(_counts, db)
    assert await _run(["compact", "--db", str(db), "--dry-run", "--older-than", "0"]) == 0
    assert "would save" in capsys.readouterr().out
    assert await asyncio.to_thread(_counts, db) == (rows_before, checkpoints_before)

    argv = ["compact", "paper", "--db", str(db), "--older-than", "0", "--granularity", "1h"]
    assert await _run(argv + ["--vacuum"]) == 0
    report = capsys.readouterr().out
    assert "paper: 1500 -> " in report
    rows_after, checkpoints_after = await asyncio.to_thread(_counts, db)
    assert rows_after < rows_before / 10
    assert checkpoints_after[-1] == checkpoints_before[-1] == 1500
    assert len(checkpoints_after) < len(checkpoints_before)

    store = Store(database_url(str(db)))
    await store.open()
    try:
        history = History(store)
        head = await history.head("paper")
        versions = [row.seq for row in await history.db.rows(head.id, after=0, upto=1500)]
        assert NAMED in versions and N_ALICE in versions  # named, and the author change
        assert set(checkpoints_after) <= set(versions)
        for seq in range(0, 1501, 7):
            version = await history.version_json(head, seq)
            expected = max([v for v in versions if v <= seq], default=0)
            assert version["seq"] == expected
            assert version["content"].get(ROOT, "") == sample.texts[expected]
        page = await history.timeline(head, before=None, limit=50, gap_ms=3_600_000, raw=False)
        entries = page["entries"]
        assert sum(e["updates"] for e in entries) == 1500
        assert {e["authors"][0] for e in entries} == {"alice", "bob"}
        diff = await history.diff(head, NAMED, 1500, ROOT)
        assert (
            "".join(s["text"] for s in diff["spans"] if s["op"] != "delete") == sample.texts[1500]
        )
        blame = await history.blame(head, 1500, ROOT)
        assert "".join(s["text"] for s in blame["spans"]) == sample.texts[1500]
    finally:
        await store.close()


async def test_compaction_while_serving(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Compacting a room that is open and being edited changes nothing its editors see,
    and the room keeps storing and loading correctly afterwards."""
    db = tmp_path / "live.db"
    sample = trace(600)
    async with start_server(_config(db)) as server:
        async with editor(session, server.url("live", "user=eve")) as eve:
            await send(session, server, "live", sample.updates[:500], user="ann")
            await eventually(lambda: str(eve) == sample.texts[500], what="eve in sync")
            argv = ["compact", "--db", str(db), "--older-than", "0", "--granularity", "1h"]
            assert await _run(argv) == 0
            await send(session, server, "live", sample.updates[500:], user="ann")
            await eventually(lambda: str(eve) == sample.texts[600], what="still relaying")
            eve.text += "!"
            await eventually(lambda: _stored(session, server, 601), what="eve's edit stored")
        status, text = await get(session, server, "/api/docs/live/versions/latest", format="text")
        assert text == sample.texts[600] + "!"
        # (pycrdt's Provider echoes deletions back, so eve may have added versions too.)
        final = await last_seq(session, server, "live")
    async with start_server(_config(db)) as again:
        assert await last_seq(session, again, "live") == final
        async with editor(session, again.url("live")) as late:
            assert str(late) == sample.texts[600] + "!"


async def _stored(session: aiohttp.ClientSession, server: Any, seq: int) -> bool:
    return await last_seq(session, server, "live") >= seq


async def test_export_rich_text(
    tmp_path: Path, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export`` writes a Tiptap document's fragment as ProseMirror JSON and HTML, and
    as escaped XML text by default (its main root)."""
    db = tmp_path / "collab.db"
    doc: Doc[Any] = Doc()
    add(doc.get("default", type=XmlFragment), [el("paragraph", [("a<b", {"bold": {}})])])
    async with start_server(_config(db)) as server:
        async with raw_client(session, server.url("tip", "user=ann")) as client:
            await client.handshake()
            await client.ws.send_bytes(encode_update(doc.get_update()))
            await eventually(lambda: _tip_stored(session, server), 10, "stored")
    assert await _run(["export", "tip", "--format", "prosemirror", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "type": "doc",
        "content": [
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "a<b", "marks": [{"type": "bold"}]}],
            }
        ],
    }
    assert await _run(["export", "tip", "--format", "html", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "<p><strong>a&lt;b</strong></p>"
    assert await _run(["export", "tip", "--format", "text", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "<paragraph><bold>a&lt;b</bold></paragraph>"


async def _tip_stored(session: aiohttp.ClientSession, server: Any) -> bool:
    return await last_seq(session, server, "tip") >= 1
