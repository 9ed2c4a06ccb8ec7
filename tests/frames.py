"""WebSocket frames as aiohttp's own writer builds them, for tests that compare against it
or that write raw frames to a socket."""

from __future__ import annotations

import asyncio

from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_websocket import WSMsgType

__all__ = ["frames"]


class _Capture:
    """The part of an asyncio transport aiohttp's writer uses: it records the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


async def frames(messages: list[bytes], *, masked: bool, close: bool = False) -> bytes:
    """The binary frames aiohttp writes for ``messages`` (a client's are ``masked``), then a
    close frame if ``close``."""
    capture = _Capture()
    writer = WebSocketWriter(
        BaseProtocol(asyncio.get_running_loop()),
        capture,  # type: ignore[arg-type]
        use_mask=masked,
    )
    for message in messages:
        await writer.send_frame(message, WSMsgType.BINARY)
    if close:
        await writer.close(1000, b"")
    return bytes(capture.data)
