"""Late-join scenario: a seeder pushes a large document and stays; others join and sync.

Timing is connect -> SyncStep2 received. Every joiner's SyncStep2 is verified after the
timed part (apply to a fresh Doc, compare with the trace's text), so checking never slows
a join down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .metrics import ClientLoad, summarize
from .peer import Peer, close_all, connect_many, new_session, open_peer
from .process import ServerProcess
from .trace import TraceDoc, text_of
from .wire import SyncStep, encode_sync

__all__ = ["JoinConfig", "run_late_join"]


@dataclass(frozen=True, slots=True)
class JoinConfig:
    joins: int
    burst: int
    timeout: float  # for each join, and for the seeded document to show up in full


async def run_late_join(
    doc: TraceDoc, cfg: JoinConfig, url_template: str, server: ServerProcess
) -> dict[str, Any]:
    """Seed the document, then time sequential joins and one burst of simultaneous joins."""
    room = f"join-{uuid.uuid4().hex[:8]}"
    url = url_template.format(port=server.port, room=room)
    verdicts: dict[bytes, bool] = {}

    def verify(step2: bytes) -> bool:
        if step2 not in verdicts:
            verdicts[step2] = text_of(step2) == doc.text
        return verdicts[step2]

    async def join() -> Peer:
        async with asyncio.timeout(cfg.timeout):
            peer = await open_peer(session, url, room)
        await peer.close()
        return peer

    async with new_session() as session:
        rss0 = server.usage().rss_kb
        async with asyncio.timeout(cfg.timeout):
            seeder = await open_peer(session, url, room)
        try:
            t0 = time.perf_counter()
            await seeder.send(encode_sync(SyncStep.UPDATE, doc.update))
            # untimed joins until one receives the whole document (this also warms the room)
            async with asyncio.timeout(cfg.timeout):
                while True:
                    if verify((await join()).step2):
                        break
                    await asyncio.sleep(0.1)
            seed_ms = (time.perf_counter() - t0) * 1000
            seeder.pump(lambda _peer, _data: None)  # keep reading: stay a live member
            rss1 = server.usage().rss_kb
            sequential = [await join() for _ in range(cfg.joins)]
            load = ClientLoad()
            load.start()
            burst, errors = await connect_many(
                lambda _i: open_peer(session, url, room), cfg.burst, cfg.burst, cfg.timeout
            )
            client = load.stop()
            await close_all(burst)
        finally:
            await seeder.close()
    joined = sequential + burst
    return {
        "doc_chars": len(doc.text),
        "doc_update_bytes": len(doc.update),
        "trace_edits": doc.edits,
        "doc_cached": doc.cached,
        "seed_ms": round(seed_ms, 1),
        "server_rss_mb": round(rss1 / 1024, 1),
        "doc_rss_mb": round((rss1 - rss0) / 1024, 1),
        "step2_bytes": max((len(p.step2) for p in joined), default=0),
        "sequential_ms": summarize([p.sync_ms for p in sequential], 1),
        "burst_ms": summarize([p.sync_ms for p in burst], 1),
        "burst_failures": len(errors),
        "burst_errors": errors[:3],
        "verified": sum(verify(p.step2) for p in joined),
        "joins": len(joined),
        "client_cpu_pct_burst": client.cpu_pct,
        "server_exit": server.exit_code(),
    }
