"""Faults with real parts: a real ``collab serve`` process killed or stopped while five
typists edit, then restarted; what it had acknowledged must still be there."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.sync.protocol import SyncUpdate, decode, encode_update
from tests import process
from tests.conftest import editor, raw_client

TYPISTS = 5
COMMIT_INTERVAL = 0.05


class Typist:
    """A client typing into its own root of a shared room, one keystroke at a time, that
    remembers when each keystroke left it."""

    def __init__(self, index: int) -> None:
        self.root = f"typist{index}"
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get(self.root, type=Text)
        self.updates: list[bytes] = []
        self.doc.observe(lambda event: self.updates.append(event.update))
        self.sent_at: list[float] = []

    async def type(self, session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        async with raw_client(session, url) as client:
            await client.handshake()
            while not stop.is_set():
                self.text += "x"
                try:
                    await client.ws.send_bytes(encode_update(self.updates[-1]))
                except (ConnectionError, RuntimeError):
                    return  # the server is gone
                self.sent_at.append(time.monotonic())
                await asyncio.sleep(random.uniform(0.002, 0.01))


class Watcher:
    """A member of the same room that applies everything the server relays to it: what it
    has, the server has acknowledged."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()

    async def watch(self, session: aiohttp.ClientSession, url: str) -> None:
        async with raw_client(session, url) as client:
            await client.handshake()
            while True:
                msg = await client.ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    return
                message = decode(msg.data)
                if isinstance(message, SyncUpdate):
                    self.doc.apply_update(message.update)

    def length(self, root: str) -> int:
        return len(str(self.doc.get(root, type=Text)))


async def _type_then(
    tmp_path: Path, session: aiohttp.ClientSession, signum: signal.Signals
) -> tuple[list[Typist], Watcher, float, Path]:
    db = tmp_path / "collab.db"
    server = await process.start(db, tmp_path / "log", "--commit-interval", str(COMMIT_INTERVAL))
    typists = [Typist(i) for i in range(TYPISTS)]
    watcher = Watcher()
    watching = asyncio.create_task(watcher.watch(session, server.url("room")))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(t.type(session, server.url("room"), stop)) for t in typists]
    await asyncio.sleep(random.uniform(0.8, 1.5))  # let them type; the kill comes at any time
    killed_at = time.monotonic()
    server.signal(signum)
    status = await server.wait()
    stop.set()
    await asyncio.wait([*tasks, watching], timeout=10)
    assert status == (-signal.SIGKILL if signum == signal.SIGKILL else 0)
    return typists, watcher, killed_at, db


async def _stored(session: aiohttp.ClientSession, db: Path, log: Path) -> Doc[Any]:
    server = await process.start(db, log)
    try:
        doc: Doc[Any] = Doc()
        async with editor(session, server.url("room"), doc):
            return doc
    finally:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_kill_9_under_five_typists_loses_nothing_older_than_the_window(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """SIGKILL while five clients type: every keystroke sent more than commit_interval +
    100 ms before the kill is stored."""
    typists, _, killed_at, db = await _type_then(tmp_path, session, signal.SIGKILL)
    doc = await _stored(session, db, tmp_path / "log2")
    for typist in typists:
        old = sum(1 for at in typist.sent_at if at < killed_at - COMMIT_INTERVAL - 0.1)
        stored = len(str(doc.get(typist.root, type=Text)))
        assert old > 10, "the typists did not get to type"
        assert stored >= old, f"{typist.root}: {stored} stored of {old} acknowledged"


async def test_sigterm_under_five_typists_loses_nothing(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """SIGTERM while five clients type: every keystroke the server relayed to another member
    is stored, however close to the signal (one it never read stays with its client, which
    re-sends it when it reconnects)."""
    typists, watcher, _, db = await _type_then(tmp_path, session, signal.SIGTERM)
    doc = await _stored(session, db, tmp_path / "log2")
    for typist in typists:
        relayed = watcher.length(typist.root)
        stored = len(str(doc.get(typist.root, type=Text)))
        assert relayed > 10, "the typists did not get to type"
        assert stored >= relayed, f"{typist.root}: {stored} stored of {relayed} relayed"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(10)
