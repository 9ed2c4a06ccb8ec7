"""Keepalive through a running server: one sweep per server pings quiet sockets and drops
the ones that stay quiet, and clients' own pings are answered.

Real sockets and real aiohttp clients; every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import WSMsgType

from collab.config import Config
from collab.http.state import HUB, METRICS
from collab.sync.protocol import encode_query_awareness
from tests.conftest import RawClient, Server, eventually, raw_client, start_server
from tests.jsclient import JsClient, require_node

INTERVAL = 0.2  # seconds between keepalive sweeps in these tests


_ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


def _closes(server: Server, code: int) -> float:
    return float(server.app[METRICS].closes.labels(str(code), "y-websocket")._value.get())


def _keepalive_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "collab-keepalive"]


async def _read_until_closed(client: RawClient, pings: list[bytes]) -> int:
    """Read (without answering pings) until the server closes; record each ping's payload.

    Returns:
        The close code the client saw.
    """
    while True:
        msg = await client.recv(timeout=10 * INTERVAL)
        if msg.type is WSMsgType.PING:
            pings.append(msg.data)
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            code = client.ws.close_code
            assert code is not None
            return code


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read and discard until closed (aiohttp's client answers pings inside ``receive``)."""
    while (await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
        pass


async def test_client_answering_pings_stays_connected(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A client that sends nothing but answers pings (aiohttp's default autoping) is pinged
    every other sweep, and stays in its room across many sweeps."""
    async with start_server(config.replace(heartbeat=INTERVAL)) as server:
        async with session.ws_connect(server.url("idle")) as ws:
            # autoping answers only while someone reads: read in the background.
            reader = asyncio.create_task(_drain(ws))
            hub = server.app[HUB]
            await eventually(lambda: "idle" in hub.rooms and len(hub.rooms["idle"].members) == 1)
            (conn,) = hub.rooms["idle"].members
            # The client sends no message: every count is a pong, and 4 pongs take at least
            # 7 sweeps (a ping every other sweep).
            await eventually(lambda: conn.received >= 4, timeout=20 * INTERVAL, what="4 pongs")
            assert conn in hub.rooms["idle"].members and not conn.closing
            assert not ws.closed and not reader.done()
            reader.cancel()
            await asyncio.wait([reader])
        assert _closes(server, 1006) == 0


async def test_js_client_answers_the_hand_written_ping(config: Config) -> None:
    """The real y-websocket client (Node's ``ws``) answers the sweep's 2-byte ping frame
    and stays connected across many intervals."""
    require_node()
    async with start_server(config.replace(heartbeat=INTERVAL)) as server:
        hub = server.app[HUB]
        client = await JsClient.start(server.url("").rstrip("/"), "js", "ann")
        try:
            await eventually(lambda: "js" in hub.rooms and len(hub.rooms["js"].members) == 1)
            (conn,) = hub.rooms["js"].members
            # The only member: what it sent beyond its binary messages is pongs.
            await eventually(
                lambda: conn.received - hub.stats.messages_in >= 3,
                timeout=20 * INTERVAL,
                what="3 pongs",
            )
            assert not client.seen("close") and not conn.closing
        finally:
            await client.quit()
    assert _closes(server, 1006) == 0


async def test_any_message_counts_as_alive(config: Config, session: aiohttp.ClientSession) -> None:
    """A client that never answers pings but sends a message after each one is alive:
    every message counts, not only pongs."""
    async with (
        start_server(config.replace(heartbeat=INTERVAL)) as server,
        raw_client(session, server.url("chatty"), autoping=False) as client,
    ):
        await client.handshake()
        # Read in the test itself and stop after the third ping: a reader task cancelled
        # in the middle of its send left aiohttp's client writer stuck, and the close at
        # the end hung (about one run in seven).
        pings = 0
        while pings < 3:
            msg = await client.recv(timeout=10 * INTERVAL)
            assert msg.type not in _ENDED, f"dropped with {client.ws.close_code} after {pings}"
            if msg.type is WSMsgType.PING:
                pings += 1
                await client.ws.send_bytes(encode_query_awareness())
        assert len(server.app[HUB].rooms["chatty"].members) == 1
    assert _closes(server, 1006) == 0


@pytest.mark.parametrize("heartbeat", [30.0, 0.0], ids=["keepalive-on", "keepalive-off"])
async def test_client_ping_gets_pong(
    config: Config, session: aiohttp.ClientSession, heartbeat: float
) -> None:
    """A ping from the client is answered with a pong carrying the same payload, whether
    or not the server's own keepalive is on, and the connection carries on."""
    async with (
        start_server(config.replace(heartbeat=heartbeat)) as server,
        raw_client(session, server.url("pong"), autoping=False) as client,
    ):
        await client.handshake()
        await client.ws.ping(b"are you there?")
        while (msg := await client.recv()).type is not WSMsgType.PONG:
            assert msg.type is WSMsgType.BINARY, msg  # nothing but room traffic before it
        assert msg.data == b"are you there?"
        # Still a member, still served: a query gets the room's awareness states back.
        await client.ws.send_bytes(encode_query_awareness())
        assert (await client.recv_bytes())[0] == 1  # an awareness message
        assert len(server.app[HUB].rooms["pong"].members) == 1


async def test_silent_client_is_dropped_with_1006(
    config: Config, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that neither answers pings nor sends anything is pinged, then dropped
    without a close handshake (1006, counted in /metrics) and leaves its room."""
    caplog.set_level(logging.INFO, logger="collab.http")
    async with (
        start_server(config.replace(heartbeat=INTERVAL)) as server,
        raw_client(session, server.url("gone"), autoping=False) as silent,
    ):
        hub = server.app[HUB]
        await silent.handshake()
        pings: list[bytes] = []
        code = await _read_until_closed(silent, pings)
        assert pings == [b""]  # pinged once, then dropped at the next sweep
        assert code == 1006  # the transport went away: no close frame was sent
        await eventually(lambda: _closes(server, 1006) == 1, what="close counted")
        await eventually(lambda: hub.members == 0, what="left the room")
        async with session.get(server.http + "/metrics") as response:
            assert (
                'collab_closes_total{code="1006",protocol="y-websocket"} 1.0'
                in await response.text()
            )
    assert "dropped 1 connections that did not answer a ping" in caplog.text
    assert "code=1006" in caplog.text


async def test_one_sweep_per_server(config: Config, session: aiohttp.ClientSession) -> None:
    """Keepalive is one task for the whole server, however many sockets, and none when
    ``heartbeat`` is 0."""
    async with start_server(config.replace(heartbeat=INTERVAL)) as server:
        url = server.url("many")
        async with (
            raw_client(session, url) as a,
            raw_client(session, url) as b,
            raw_client(session, url) as c,
        ):
            for client in (a, b, c):
                await client.handshake()
            assert len(_keepalive_tasks()) == 1
    assert _keepalive_tasks() == []  # ended with the server
    async with start_server(config.replace(heartbeat=0.0)) as server:
        async with raw_client(session, server.url("many")) as client:
            await client.handshake()
            assert _keepalive_tasks() == []
