"""Drive the real JavaScript Yjs client (tests/js/client.mjs) from pytest.

When Node or ``tests/js/node_modules`` is missing the tests skip, unless
``COLLAB_REQUIRE_NODE=1`` (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TIMEOUT_FACTOR, eventually

JS_DIR = Path(__file__).parent / "js"
RECONNECT_BACKOFF = 0.3  # seconds: the longest a client waits before it tries again


def require_node() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (JS_DIR / "node_modules" / "y-websocket").is_dir():
        missing = "tests/js/node_modules missing (run: npm ci --prefix tests/js)"
    if missing:
        if os.environ.get("COLLAB_REQUIRE_NODE") == "1":
            pytest.fail(f"COLLAB_REQUIRE_NODE=1 but {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


class JsClient:
    """One ``client.mjs`` process: a browser tab's worth of real y-websocket client."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, base_url: str, room: str, name: str, **params: str) -> JsClient:
        node = require_node()
        args = ["--url", base_url, "--room", room, "--name", name]
        args += ["--max-backoff", str(round(RECONNECT_BACKOFF * 1000))]
        if params:
            args += ["--params", json.dumps(params)]
        process = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / "client.mjs"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(process)
        await eventually(lambda: client.seen("ready"), timeout=20, what="client.mjs ready")
        return client

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            event["_at"] = time.monotonic()  # when it arrived here, for timing tests
            self.events.append(event)
            future = self._replies.pop(event.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(event)

    def seen(self, kind: str, **fields: Any) -> bool:
        return any(
            e["event"] == kind and all(e.get(k) == v for k, v in fields.items())
            for e in self.events
        )

    async def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        line = json.dumps({"cmd": cmd, "id": self._next_id, **args}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        reply = await asyncio.wait_for(future, 10 * TIMEOUT_FACTOR)
        assert reply["event"] != "error", reply
        return reply

    async def state(self) -> dict[str, Any]:
        return await self.command("state")

    async def text(self) -> str:
        return str((await self.state())["text"])

    async def insert(self, index: int, text: str) -> None:
        await self.command("insert", index=index, text=text)

    async def synced(self) -> bool:
        return bool((await self.state())["synced"])

    async def quit(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader

    def kill(self) -> None:
        self.process.kill()


class HocuspocusClient(JsClient):
    """One ``hocuspocus.mjs`` process: an app's shared ``HocuspocusProviderWebsocket`` with
    one real ``HocuspocusProvider`` per opened document."""

    @classmethod
    async def start_socket(cls, url: str, major: int = 4) -> HocuspocusClient:
        node = require_node()
        process = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / "hocuspocus.mjs"),
            "--url",
            url,
            "--major",
            str(major),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(process)
        await eventually(lambda: client.seen("ready"), timeout=20, what="hocuspocus.mjs ready")
        return client

    async def open(self, doc: str, token: str = "", **options: Any) -> None:
        await self.command("open", doc=doc, token=token, **options)

    async def doc_state(self, doc: str) -> dict[str, Any]:
        return await self.command("state", doc=doc)

    async def doc_text(self, doc: str) -> str:
        return str((await self.doc_state(doc))["text"])

    async def type(self, doc: str, text: str, index: int | None = None) -> None:
        await self.command("insert", doc=doc, text=text, index=index)
