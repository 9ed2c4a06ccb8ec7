"""The hand-written frame encoder against aiohttp's own writer, over every size boundary."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_websocket import WSMsgType

from collab.connection import binary_frame

# Both sides of each point where the length field changes form (7 bits, 16 bits, 64 bits),
# of aiohttp's own switch to two writes (MSG_SIZE, 16 KiB), and up to 2**24 bytes.
SIZES = sorted(
    {0, 1, 2**24}
    | {edge + delta for edge in (125, 126, 127, 16 * 1024, 65535, 65536) for delta in (-1, 0, 1)}
    | set(random.Random(1234).sample(range(2**24), 24))
)


class _Capture:
    """The part of an asyncio transport aiohttp's writer uses: it records the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


async def _aiohttp_frame(payload: bytes) -> bytes:
    transport = _Capture()
    protocol = BaseProtocol(asyncio.get_running_loop())
    writer = WebSocketWriter(protocol, transport, use_mask=False, compress=0)  # type: ignore[arg-type]
    await writer.send_frame(payload, WSMsgType.BINARY)
    return bytes(transport.data)


@pytest.mark.parametrize("size", SIZES)
async def test_binary_frame_matches_aiohttp(size: int) -> None:
    """binary_frame writes exactly the bytes aiohttp's writer sends for the same payload."""
    payload = random.Random(size).randbytes(size)
    assert binary_frame(payload) == await _aiohttp_frame(payload)
