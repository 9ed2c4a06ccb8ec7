"""Interop with the real JavaScript client: yjs + y-websocket's WebsocketProvider in Node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from tests.conftest import Server, editor, eventually, start_server
from tests.jsclient import JsClient, require_node
from tests.process import free_port


@asynccontextmanager
async def js(server_base: str, room: str, name: str) -> AsyncIterator[JsClient]:
    client = await JsClient.start(server_base, room, name)
    try:
        yield client
    finally:
        await client.quit()


def base(server: Server) -> str:
    return server.url("").rstrip("/")


async def test_js_clients_converge_with_each_other_and_pycrdt(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Two JS clients and a pycrdt client editing concurrently end with the same text."""
    require_node()
    async with js(base(server), "mix", "ann") as ann, js(base(server), "mix", "ben") as ben:
        async with editor(session, server.url("mix")) as py:
            await eventually(ann.synced, what="ann synced")
            await eventually(ben.synced, what="ben synced")
            await asyncio.gather(
                *(ann.insert(0, "a") for _ in range(20)),
                *(ben.insert(0, "b") for _ in range(20)),
            )
            for _ in range(20):
                py.text.insert(0, "p")

            async def converged() -> bool:
                texts = {await ann.text(), await ben.text(), str(py)}
                return len(texts) == 1 and len(texts.pop()) == 60

            await eventually(converged, timeout=10, what="convergence")


async def test_js_late_joiner_gets_full_document(server: Server) -> None:
    """A JS client joining late receives everything written before it came."""
    require_node()
    async with js(base(server), "late", "ann") as ann:
        await eventually(ann.synced)
        await ann.insert(0, "written before")
        async with js(base(server), "late", "zoe") as zoe:
            await eventually(lambda: _equals(zoe, "written before"), what="late joiner")


async def _equals(client: JsClient, text: str) -> bool:
    return await client.text() == text


async def test_js_awareness_added_and_removed(server: Server) -> None:
    """JS clients see each other's name via awareness, and the removal when one is killed."""
    require_node()
    async with js(base(server), "aw", "ann") as ann:
        ben = await JsClient.start(base(server), "aw", "ben")
        ben_id = str((await ben.state())["clientID"])

        async def ann_sees_ben() -> bool:
            states = (await ann.state())["awareness"]
            return bool(states.get(ben_id, {}).get("user", {}).get("name") == "ben")

        await eventually(ann_sees_ben, what="ben's awareness at ann")
        ben.kill()  # no goodbye message: the server must remove ben's state itself
        await ben.quit()

        async def ben_gone() -> bool:
            return ben_id not in (await ann.state())["awareness"]

        await eventually(ben_gone, timeout=10, what="ben's removal at ann")


async def test_js_client_survives_server_restart(config: Config) -> None:
    """The text outlives a server restart, and the JS client reconnects by itself."""
    require_node()
    port = free_port()
    async with start_server(config, port=port) as first:
        url = base(first)
        client = await JsClient.start(url, "restart", "ann")
        await eventually(client.synced)
        await client.insert(0, "durable")
        await eventually(lambda: first.app[HUB].rooms["restart"].seq == 1)
    try:
        await eventually(lambda: client.seen("close"), what="client saw the close")
        async with start_server(config, port=port) as second:
            assert base(second) == url
            await eventually(client.synced, timeout=10, what="reconnected and synced")
            await client.insert(len("durable"), "!")
            async with js(url, "restart", "zoe") as zoe:
                await eventually(lambda: _equals(zoe, "durable!"), timeout=10)
    finally:
        await client.quit()


async def test_js_client_stops_retrying_on_bad_room_name(server: Server) -> None:
    """A permanent refusal (4400) makes the JS client stop reconnecting."""
    require_node()
    async with js(base(server), "x" * 600, "ann") as ann:
        await eventually(lambda: ann.seen("closed"), what="client gave up")
        closes = [e for e in ann.events if e["event"] == "close"]
        assert closes[0]["code"] == CloseCode.BAD_REQUEST
        assert len(closes) == 1
