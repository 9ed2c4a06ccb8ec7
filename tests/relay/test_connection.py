"""The hand-written frame encoder against aiohttp's own writer, over every size boundary."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import subprocess
import sys

import aiohttp
import pytest

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.relay.connection import binary_frame, new_connection_id
from tests.conftest import Server, editor, eventually, start_server
from tests.frames import frames

# Both sides of each point where the length field changes form (7 bits, 16 bits, 64 bits),
# of aiohttp's own switch to two writes (MSG_SIZE, 16 KiB), and up to 2**24 bytes.
SIZES = sorted(
    {0, 1, 2**24}
    | {edge + delta for edge in (125, 126, 127, 16 * 1024, 65535, 65536) for delta in (-1, 0, 1)}
    | set(random.Random(1234).sample(range(2**24), 24))
)


async def _closes(session: aiohttp.ClientSession, server: Server, code: int) -> float:
    async with session.get(server.http + "/metrics") as response:
        body = await response.text()
    match = re.search(
        rf'^collab_closes_total{{code="{code}",protocol="y-websocket"}} (\S+)$', body, re.M
    )
    return float(match[1]) if match else 0.0


@pytest.mark.parametrize("size", SIZES)
async def test_binary_frame_matches_aiohttp(size: int) -> None:
    """binary_frame writes exactly the bytes aiohttp's writer sends for the same payload."""
    payload = random.Random(size).randbytes(size)
    assert binary_frame(payload) == await frames([payload], masked=False)


async def test_peer_lost_mid_send_is_recorded_as_1006(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A client whose connection breaks while the server is still sending to it is
    recorded in /metrics as closed with 1006, not as a normal close."""
    cfg = config.replace(outbox_max_bytes=1 << 30)
    async with start_server(cfg) as server, editor(session, server.url("lost")) as alice:
        hub = server.app[HUB]
        # A bare socket that upgrades and then never reads: what the server sends piles
        # up in the kernel's buffers, then in the connection's queue.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.test_server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws/lost HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        await eventually(lambda: len(hub.rooms["lost"].members) == 2, what="joined")
        # The bare socket has sent nothing; the editor has (its sync handshake).
        (silent,) = [m for m in hub.rooms["lost"].members if m.received == 0]
        chunk = "x" * 50_000
        for _ in range(2000):
            alice.text += chunk
            if silent.queued_bytes:
                break
            await asyncio.sleep(0)  # let the relay deliver
        await eventually(lambda: silent.queued_bytes > 0, what="a send in flight")
        before = await _closes(session, server, CloseCode.ABNORMAL_CLOSURE)
        writer.transport.abort()  # unread data in the socket: the kernel sends a reset
        await eventually(lambda: silent.close_code is not None, what="noticed")
        await eventually(lambda: hub.members == 1, what="left")
        assert silent.close_code == CloseCode.ABNORMAL_CLOSURE
        assert await _closes(session, server, CloseCode.ABNORMAL_CLOSURE) == before + 1


def test_connection_ids_are_unique_in_a_process_and_across_processes() -> None:
    """Ids never repeat within a process, and two processes start from different
    random prefixes (stored updates keep the id, so nodes and restarts must not clash)."""
    ids = {new_connection_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    code = "from collab.relay.connection import new_connection_id as n; print(n())"
    others = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(others) == 3 and not others & ids
