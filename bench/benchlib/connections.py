"""Connections scenario: many idle connections, each alone in its own room with a small doc.

Each connection pushes a ~100 B update and then does one SyncStep1 -> SyncStep2 round trip,
which returns only after the server has applied the update (messages of one connection are
handled in order), so the RSS reading afterwards includes every room's document.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pycrdt

from .metrics import summarize
from .peer import Peer, close_all, connect_many, new_session, open_peer
from .process import ServerProcess
from .wire import SyncStep, encode_sync

__all__ = ["ConnConfig", "run_connections"]


@dataclass(frozen=True, slots=True)
class ConnConfig:
    count: int
    concurrency: int
    timeout: float
    settle: float


def _small_update() -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=7777)
    doc.get("content", type=pycrdt.Text).insert(
        0, "Hello from an idle client. This room holds one small paragraph of text."
    )
    return doc.get_update()


async def run_connections(
    cfg: ConnConfig, url_template: str, server: ServerProcess
) -> dict[str, Any]:
    """Open cfg.count idle rooms+connections, read server RSS before/after, close them all."""
    run_id = uuid.uuid4().hex[:8]
    small = _small_update()
    update = encode_sync(SyncStep.UPDATE, small)
    probes: list[float] = []
    await asyncio.sleep(cfg.settle)
    rss0 = server.usage().rss_kb
    async with new_session() as session:

        async def make(i: int) -> Peer:
            room = f"conn-{run_id}-{i}"
            peer = await open_peer(session, url_template.format(port=server.port, room=room), room)
            try:
                await peer.ws.send_bytes(update)
                t = time.perf_counter()
                step2 = await peer.round_trip()
                probes.append((time.perf_counter() - t) * 1000)
                if len(step2) <= 2:
                    raise ValueError("the room's document did not hold the pushed update")
            except BaseException:
                await peer.close()
                raise
            peer.pump(lambda _peer, _data: None)  # answers pings; discards the rest
            return peer

        t0 = time.perf_counter()
        peers, errors = await connect_many(
            make, cfg.count, cfg.concurrency, cfg.timeout, max(10, cfg.count // 20)
        )
        connect_s = time.perf_counter() - t0
        await asyncio.sleep(cfg.settle)
        open_now = sum(not p.ws.closed for p in peers)
        rss1 = server.usage().rss_kb
        await close_all(peers)
        await asyncio.sleep(cfg.settle)
        rss2 = server.usage().rss_kb
    return {
        "requested": cfg.count,
        "opened": len(peers),
        "open_at_measure": open_now,
        "failures": len(errors),
        "errors": errors[:3],
        "connect_s": round(connect_s, 2),
        "connects_per_s": round(len(peers) / connect_s, 1),
        "handshake_ms": summarize([p.sync_ms for p in peers]),
        "push_rtt_ms": summarize(probes),
        "small_update_bytes": len(small),
        "rss_before_mb": round(rss0 / 1024, 1),
        "rss_open_mb": round(rss1 / 1024, 1),
        "rss_after_close_mb": round(rss2 / 1024, 1),
        "kb_per_conn": round((rss1 - rss0) / open_now, 2) if open_now else None,
        "server_exit": server.exit_code(),
    }
