"""Shared fixtures: a real collab server on a real port, real Yjs clients, deadlines.

Nothing of collab is mocked. ``server`` starts ``create_app`` with aiohttp's test server
(a real socket on 127.0.0.1) on a real SQLite file under ``tmp_path``. Editors are
``pycrdt.Doc`` objects synced by ``pycrdt.Provider`` over an aiohttp client WebSocket.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from blockbuster import BlockBuster, blockbuster_ctx
from pycrdt import Doc, Provider, Text

from collab.config import Config
from collab.http.app import create_app
from collab.sync.protocol import decode, encode_sync_step1, encode_sync_step2

pytest_plugins = ["tests.browser"]  # the browser and tiptap_bundle fixtures

TIMEOUT_FACTOR = float(os.environ.get("COLLAB_TEST_TIMEOUT_FACTOR", "1"))
ROOT = "content"  # the Y.Text every part of collab edits


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Wait until ``condition()`` is true, polling, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster | None]:
    """Fail any test in which the event loop makes a blocking call."""
    with blockbuster_ctx("collab") as bb:
        # Schema upgrades run Alembic (which reads migration scripts from disk) in a worker
        # thread with its own event loop; that loop is allowed to block.
        for function in bb.functions.values():
            function.can_block_in("collab/store/schema.py", "upgrade_schema")
            # asyncpg looks for ~/.pgpass and client certificates when it opens a
            # connection: once per pooled connection, not per query.
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_arguments")
        yield bb


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        db=str(tmp_path / "collab.db"),
        commit_interval=0.01,
        room_grace=0.2,
        heartbeat=30.0,
    )


@dataclass
class Server:
    """A running collab server and where to reach it."""

    test_server: TestServer
    config: Config

    @property
    def app(self) -> web.Application:
        return self.test_server.app

    def url(self, room: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.test_server.port}/ws/{room}" + (f"?{query}" if query else "")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.test_server.port}"

    @property
    def port(self) -> int:
        port = self.test_server.port
        assert port is not None  # started
        return port


@asynccontextmanager
async def start_server(config: Config, port: int | None = None) -> AsyncIterator[Server]:
    """Run a collab server for ``config`` on 127.0.0.1, on ``port`` or a free one."""
    test_server = TestServer(create_app(config), host="127.0.0.1", port=port)
    await test_server.start_server()
    try:
        yield Server(test_server, config)
    finally:
        await test_server.close()


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with start_server(config) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Channel:
    """pycrdt's ``Channel`` over an aiohttp client WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> bytes:
        return await self.recv()

    async def send(self, message: bytes) -> None:
        await self._ws.send_bytes(message)

    async def recv(self) -> bytes:
        while True:
            msg = await self._ws.receive()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if data[0] == 0:  # Provider handles sync only; awareness is ours to check
                    return data
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                raise StopAsyncIteration
            elif msg.type is WSMsgType.ERROR:
                raise StopAsyncIteration


@dataclass
class Editor:
    """A pycrdt document kept in sync with a room."""

    doc: Doc[Any]
    ws: aiohttp.ClientWebSocketResponse
    text: Text = field(init=False)

    def __post_init__(self) -> None:
        self.text = self.doc.get(ROOT, type=Text)

    def __str__(self) -> str:
        return str(self.text)


@asynccontextmanager
async def editor(
    session: aiohttp.ClientSession, url: str, doc: Doc[Any] | None = None
) -> AsyncIterator[Editor]:
    """Connect a real Yjs client (pycrdt ``Provider``) to ``url`` and wait until synced."""
    doc = doc if doc is not None else Doc()
    async with session.ws_connect(url, max_msg_size=0) as ws:
        async with Provider(doc, Channel(ws, url)) as provider:
            await asyncio.wait_for(provider.synced.wait(), 5 * TIMEOUT_FACTOR)
            yield Editor(doc, ws)


class RawClient:
    """A hand-driven WebSocket client for protocol-level tests."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def recv(self, timeout: float = 5.0) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), timeout * TIMEOUT_FACTOR)

    async def recv_bytes(self, timeout: float = 5.0) -> bytes:
        msg = await self.recv(timeout)
        assert msg.type is WSMsgType.BINARY, msg
        data: bytes = msg.data
        return data

    async def handshake(self) -> None:
        """Do the sync handshake as an empty client: answer step1, get our step2."""
        first = decode(await self.recv_bytes())
        assert type(first).__name__ == "SyncStep1"
        await self.ws.send_bytes(encode_sync_step2(b"\x00\x00"))
        await self.ws.send_bytes(encode_sync_step1(b"\x00"))
        while type(decode(await self.recv_bytes())).__name__ != "SyncStep2":
            pass

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return its close code."""
        while True:
            msg = await self.recv(timeout)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                return self.ws.close_code
            if msg.type is WSMsgType.ERROR:
                return self.ws.close_code


@asynccontextmanager
async def raw_client(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> AsyncIterator[RawClient]:
    async with session.ws_connect(url, max_msg_size=0, autoclose=False, **kwargs) as ws:
        yield RawClient(ws)
