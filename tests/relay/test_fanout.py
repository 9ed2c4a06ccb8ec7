"""What the fan-out stores with each update: the characters it inserts and deletes, as
``measure()`` counts them, for updates real clients send through a running server (their
edits, a reconnect's SyncStep2) and for the server's own changes (a restore); and a
timeline over rows stored without counts is the same as over rows with them."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiohttp
from pycrdt import Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.config import Config
from collab.sync.update import measure
from tests.conftest import ROOT, Server, editor, eventually, start_server


def _stored(db: str, sql: str = "") -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        if sql:
            conn.execute(sql)
        return list(conn.execute("SELECT seq, inserted, deleted, data FROM updates ORDER BY seq"))


async def _rows(config: Config, count: int) -> list[tuple[Any, ...]]:
    async def enough() -> bool:
        return len(await asyncio.to_thread(_stored, config.db)) >= count

    await eventually(enough, what=f"{count} rows stored")
    return await asyncio.to_thread(_stored, config.db)


async def _history(session: aiohttp.ClientSession, server: Server, **params: Any) -> Any:
    async with session.get(f"{server.http}/api/docs/doc/history", params=params) as response:
        assert response.status == 200
        return await response.json()


async def test_a_clients_updates_are_stored_with_their_counts(config: Config) -> None:
    """Every row a real client's edits leave (ASCII, accented and astral text, deletes,
    formatting, a map, XML, offline edits sent in a reconnect's SyncStep2, a restore) is
    stored with the counts ``measure`` gives its bytes."""
    async with start_server(config) as server, aiohttp.ClientSession() as session:
        async with editor(session, server.url("doc", "user=ann")) as ann:
            ann.text += "hello"
            ann.text += " wörld 😀"
            del ann.text[0:2]
            ann.text.format(0, 3, {"bold": True})
            ann.doc.get("meta", type=Map)["k"] = "value"
            xml = ann.doc.get("xml", type=XmlFragment)
            xml.children.append(XmlElement("p", {}, [XmlText("para")]))
            await _rows(config, 6)
            offline: Doc[Any] = Doc()
            offline.apply_update(ann.doc.get_update())
        # Edits made while disconnected reach the server in the SyncStep2 of a reconnect.
        offline.get(ROOT, type=Text).insert(0, "ünï ")
        del offline.get(ROOT, type=Text)[8:10]
        async with editor(session, server.url("doc", "user=bob"), offline):
            await _rows(config, 7)
        async with session.post(
            f"{server.http}/api/docs/doc/restore", json={"seq": 2, "user": "eve"}
        ) as response:
            assert response.status == 200
        rows = await _rows(config, 8)
        assert len(rows) == 8
        for seq, inserted, deleted, data in rows:
            stats = measure(data)
            assert (inserted, deleted) == (stats.inserted, stats.deleted), seq
        assert sum(row[2] for row in rows) > 0  # deletes were counted, not only inserts


async def test_a_timeline_over_rows_without_counts_is_the_same(config: Config) -> None:
    """Rows stored without counts (NULL: before migration 0007, or from a dump) are
    measured from their bytes: the timeline is the same as with the stored counts."""
    async with start_server(config) as server, aiohttp.ClientSession() as session:
        async with editor(session, server.url("doc", "user=ann")) as ann:
            for word in ("one ", "twö ", "😀 ", "four"):
                ann.text += word
            del ann.text[0:4]
            await _rows(config, 5)
        grouped = await _history(session, server)
        raw = await _history(session, server, raw=1)
        await asyncio.to_thread(
            _stored, config.db, "UPDATE updates SET inserted = NULL, deleted = NULL WHERE seq % 2"
        )
        stored = await asyncio.to_thread(_stored, config.db)
        assert [r[1] for r in stored] == [None, 4, None, 4, None]
        assert await _history(session, server) == grouped
        assert await _history(session, server, raw=1) == raw
        assert grouped["entries"][0]["inserted"] == len("one twö 😀 four")
        assert grouped["entries"][0]["deleted"] == 4
