"""One benchmark client connection: connect, sync handshake, then a message pump.

A Peer keeps no Yjs document: it hands raw message bytes to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiohttp

from .wire import (
    EMPTY_STATE_VECTOR,
    EMPTY_UPDATE,
    SyncStep,
    decode_sync,
    encode_sync,
    encode_varuint,
)

__all__ = ["SCENARIO_ERRORS", "Peer", "close_all", "connect_many", "new_session", "open_peer"]

_STEP1 = encode_sync(SyncStep.STEP1, EMPTY_STATE_VECTOR)
_EMPTY_STEP2 = encode_sync(SyncStep.STEP2, EMPTY_UPDATE)
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
T = TypeVar("T")
# what a scenario may fail with and the run still go on (TimeoutError is an OSError)
SCENARIO_ERRORS = (OSError, RuntimeError, ValueError, aiohttp.ClientError)


def new_session() -> aiohttp.ClientSession:
    """A client session without aiohttp's default cap of 100 pooled connections."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


class Peer:
    """An open, synced connection to one room."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        room: str,
        sync_ms: float,
        step2: bytes,
        prefix: bytes = b"",
    ) -> None:
        self.ws = ws
        self.room = room
        # Hocuspocus: every frame starts with the document's name (a varString); the rest
        # of a Sync or Awareness frame is the y-websocket message. Empty on /ws.
        self.prefix = prefix
        self.sync_ms = sync_ms  # connect -> SyncStep2 received
        self.step2 = step2
        self.task: asyncio.Task[None] | None = None
        self.tag = 0  # free slot for the scenario (fanout: room index)

    async def send(self, data: bytes) -> bool:
        """Send one binary message; False when the connection is gone."""
        if self.ws.closed:
            return False
        try:
            await self.ws.send_bytes(self.prefix + data if self.prefix else data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def round_trip(self) -> bytes:
        """Send SyncStep1 (empty state vector) and return the next SyncStep2 payload.

        Only valid while no pump() task reads this socket.
        """
        await self.ws.send_bytes(self.prefix + _STEP1)
        return await _read_step2(self.ws, self.prefix)

    def pump(self, on_message: Callable[[Peer, bytes], None]) -> None:
        """Read every message from now on in a task and pass it to on_message."""
        self.task = asyncio.create_task(self._pump(on_message))

    async def _pump(self, on_message: Callable[[Peer, bytes], None]) -> None:
        ws = self.ws
        prefix = self.prefix
        cut = len(prefix)
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                data = msg.data
                if cut:  # a Hocuspocus frame: keep Sync and Awareness, as y-websocket bytes
                    if not data.startswith(prefix) or data[cut] > 1:
                        continue  # SyncStatus, Auth and the like
                    data = data[cut:]
                on_message(self, data)
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        with contextlib.suppress(OSError, asyncio.TimeoutError, RuntimeError):
            await self.ws.close()


async def _read_step2(ws: aiohttp.ClientWebSocketResponse, prefix: bytes = b"") -> bytes:
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"closed or non-binary message before SyncStep2: {msg.type}")
        data = msg.data
        if prefix:
            if not data.startswith(prefix) or data[len(prefix)] > 1:
                continue  # Authenticated, SyncStatus
            data = data[len(prefix) :]
        sync = decode_sync(data)
        if sync is None:  # awareness and the like
            continue
        if sync[0] == SyncStep.STEP1:
            await ws.send_bytes(prefix + _EMPTY_STEP2)
        elif sync[0] == SyncStep.STEP2:
            return sync[1]


async def open_peer(
    session: aiohttp.ClientSession, url: str, room: str, hocuspocus: bool = False
) -> Peer:
    """Connect and do the y-websocket handshake: our SyncStep1 out, the server's SyncStep1
    answered with an empty SyncStep2, wait for the server's SyncStep2.

    ``hocuspocus``: ``url`` is a Hocuspocus endpoint; the room travels in every frame,
    and an Auth message with an empty token opens it first (as a provider does).

    Callers bound it with asyncio.timeout().

    Raises:
        ConnectionError, aiohttp.ClientError: no synced connection.
    """
    t0 = time.perf_counter()
    ws = await session.ws_connect(url, max_msg_size=0, autoping=True, timeout=_WS_TIMEOUT)
    prefix = b""
    if hocuspocus:
        name = room.encode()
        prefix = encode_varuint(len(name)) + name
    try:
        if prefix:
            await ws.send_bytes(prefix + b"\x02\x00\x00")  # Auth, token, "" (no token)
        await ws.send_bytes(prefix + _STEP1)
        step2 = await _read_step2(ws, prefix)
    except BaseException:
        with contextlib.suppress(OSError, asyncio.TimeoutError, RuntimeError):
            await ws.close()
        raise
    return Peer(ws, room, (time.perf_counter() - t0) * 1000, step2, prefix)


async def connect_many(
    make: Callable[[int], Awaitable[T]],
    count: int,
    concurrency: int,
    each_s: float,
    max_failures: int | None = None,
) -> tuple[list[T], list[str]]:
    """Run make(i) for i in range(count), at most concurrency at a time, each within each_s.

    Once more than max_failures attempts failed, the remaining ones are skipped (and
    counted as failures): a server that stopped answering must not cost count x each_s.

    Returns the successes (in index order) and one error string per failure.
    """
    gate = asyncio.Semaphore(concurrency)
    limit = count if max_failures is None else max_failures
    errors: list[str] = []

    async def one(i: int) -> T | None:
        async with gate:
            if len(errors) > limit:
                errors.append("skipped: too many failures before")
                return None
            try:
                async with asyncio.timeout(each_s):
                    return await make(i)
            except SCENARIO_ERRORS as e:
                errors.append(f"{type(e).__name__}: {e}"[:200] if str(e) else type(e).__name__)
                return None

    results = await asyncio.gather(*(one(i) for i in range(count)))
    return [r for r in results if r is not None], errors


async def close_all(peers: Sequence[Peer], concurrency: int = 200) -> None:
    """Close many peers, a bounded number at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(p: Peer) -> None:
        async with gate:
            await p.close()

    await asyncio.gather(*(one(p) for p in peers))
