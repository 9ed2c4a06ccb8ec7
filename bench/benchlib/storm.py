"""Reconnect storm: the server restarts under many connected clients, who all come back.

What a deploy or a crash does to a node: ``clients`` clients in ``rooms`` rooms are
connected and synced (each room holds a small document, pushed by its first client);
then the server is stopped with SIGTERM and started again on the same port and data
directory. Every client reconnects as y-websocket's provider does (first try at once,
then after 100 ms, 200 ms, 400 ms... capped at 2.5 s, no jitter) and syncs again. The
figure is the time from the stop until every client is synced again, and per client
from the stop to its own new SyncStep2; the JSON also has when the first and the last old
connection ended (as this client saw it) and the codes of the close frames they got.

The reference y-websocket server keeps documents in memory only: after its restart the
rooms are empty (a real client would upload its copy; this one syncs an empty state
either way, so both servers do the same handshake work).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
import pycrdt

from .metrics import summarize
from .peer import SCENARIO_ERRORS, Peer, close_all, connect_many, new_session, open_peer
from .process import ServerProcess
from .wire import SyncStep, encode_sync

__all__ = ["StormConfig", "run_storm"]

_BACKOFF_MS, _BACKOFF_MAX_MS = 100, 2500  # y-websocket's reconnect schedule


@dataclass(frozen=True, slots=True)
class StormConfig:
    clients: int
    rooms: int
    concurrency: int
    timeout: float
    """Seconds for the whole storm: clients not back by then count as failures."""


def _room_update(i: int) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=10_000 + i)
    doc.get("content", type=pycrdt.Text).insert(0, f"Room {i}: a small shared paragraph.")
    return doc.get_update()


async def _close_code(peer: Peer) -> int | None:
    """Read ``peer`` until the server ends it: the code of its close frame, or ``None``
    if the connection ended without one. (Not ``ws.close_code``: aiohttp sets that to 1006
    when the reply to a close frame cannot be sent, the server having gone meanwhile.)"""
    while True:
        msg = await peer.ws.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return None


async def run_storm(cfg: StormConfig, url_template: str, server: ServerProcess) -> dict[str, Any]:
    """Connect cfg.clients, restart the server, time until every one is synced again."""
    run_id = time.strftime("%H%M%S")
    rooms = [f"storm-{run_id}-{i}" for i in range(cfg.rooms)]
    urls = [url_template.format(port=server.port, room=room) for room in rooms]
    async with new_session() as session:

        async def make(i: int) -> Peer:
            room = i % cfg.rooms
            peer = await open_peer(session, urls[room], rooms[room])
            if i < cfg.rooms:  # the room's first client gives it its document
                await peer.ws.send_bytes(encode_sync(SyncStep.UPDATE, _room_update(room)))
            return peer

        peers, errors = await connect_many(
            make, cfg.clients, cfg.concurrency, cfg.timeout, max(10, cfg.clients // 20)
        )
        await asyncio.sleep(1.0)  # the documents reach the store before the restart
        ends = [asyncio.create_task(_close_code(peer)) for peer in peers]
        stopped = time.perf_counter()
        back_ms: list[float] = []
        closed_ms: list[float] = []  # from the stop to the end of each old connection
        codes: Counter[int | None] = Counter()  # the close codes the old connections got
        attempts = [0]

        async def come_back(index: int, peer: Peer) -> None:
            codes[await ends[index]] += 1
            closed_ms.append((time.perf_counter() - stopped) * 1000)
            await peer.close()
            delay_ms = 0
            while True:
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000)
                attempts[0] += 1
                try:
                    again = await open_peer(session, urls[index % cfg.rooms], peer.room)
                except SCENARIO_ERRORS:
                    delay_ms = min(_BACKOFF_MAX_MS, max(_BACKOFF_MS, delay_ms * 2))
                    continue
                back_ms.append((time.perf_counter() - stopped) * 1000)
                peers[index] = again
                return

        returning = [asyncio.create_task(come_back(i, p)) for i, p in enumerate(peers)]
        stop_s, start_s = await server.restart()
        _, pending = await asyncio.wait(returning, timeout=cfg.timeout)
        for task in pending:
            task.cancel()
        failures = [f"{len(pending)} clients not back within {cfg.timeout:g} s"] if pending else []
        total_s = (max(back_ms) / 1000) if back_ms and not pending else None
        await close_all(peers)
    return {
        "clients": cfg.clients,
        "rooms": cfg.rooms,
        "connected": len(peers),
        "connect_failures": len(errors),
        "errors": errors[:3] + failures,
        "stop_s": round(stop_s, 2),
        "start_s": round(start_s, 2),
        "all_back_s": None if total_s is None else round(total_s, 2),
        "back_ms": summarize(back_ms),
        "first_close_ms": round(min(closed_ms), 1) if closed_ms else None,
        "last_close_ms": round(max(closed_ms), 1) if closed_ms else None,
        "close_codes": {str(code): n for code, n in sorted(codes.items(), key=str)},
        "reconnect_attempts": attempts[0],
        "server_exit": server.exit_code(),
    }
