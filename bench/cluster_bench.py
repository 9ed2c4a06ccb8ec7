"""Fan-out across nodes: the same load with every room's members on one node, then split
over two nodes sharing PostgreSQL and Redis. Prints latency percentiles, deliveries/s,
losses and server CPU per delivery (both nodes together), so the cost of the cross-node
hop is the difference between the rows. The first row is one node on SQLite without
Redis: the single-node figure the cluster's cost is compared with.

    .venv/bin/python bench/cluster_bench.py [--fanout 50x10x2@10] [--duration 10]

Needs PostgreSQL (COLLAB_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test)
and Redis (COLLAB_TEST_REDIS, default redis://127.0.0.1:6379/0) on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

from benchlib.fanout import Timing, parse_fanout, run_fanout
from benchlib.metrics import Usage
from benchlib.process import ServerProcess, ServerSpec, running_server

ROOT = Path(__file__).parent.parent
PG = os.environ.get("COLLAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("COLLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    admin = await asyncpg.connect(PG)
    name = "collab_bench_" + uuid.uuid4().hex[:8]
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class Nodes:
    """Several node processes seen as one server by the fan-out scenario."""

    nodes: list[ServerProcess]

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def usage(self) -> Usage:
        parts = [n.usage() for n in self.nodes]
        return Usage(
            cpu_s=sum(u.cpu_s for u in parts),
            rss_kb=sum(u.rss_kb for u in parts),
            pids=sum(u.pids for u in parts),
            at=max(u.at for u in parts),
        )

    def exit_code(self) -> int | None:
        codes = [n.exit_code() for n in self.nodes]
        return next((c for c in codes if c is not None), None)


async def measure(db: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """``count`` nodes on ``db`` with Redis; ``count=0``: one node on SQLite, no Redis (the
    baseline the cluster's cost is compared with)."""
    cmd = f"{ROOT}/.venv/bin/collab serve --host 127.0.0.1 --port {{port}} --log-level warning"
    if count:
        cmd += f" --db {db} --redis {REDIS}"
    else:
        cmd += " --db {tmpdir}/bench.db"
        count = 1
    spec = ServerSpec(cmd, ROOT, None, {1}, 30.0, 10.0)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(running_server(spec)) for _ in range(count)]
        group = Nodes(nodes)
        timing = Timing(args.warmup, args.duration, args.drain, 15.0, 32)
        cfg = parse_fanout(args.fanout)[0]
        return await run_fanout(
            cfg,
            timing,
            "ws://127.0.0.1:{port}/ws/{room}",
            group,  # type: ignore[arg-type]
            ports=[n.port for n in nodes],
        )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fanout", default="50x10x2@10")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--drain", type=float, default=5.0)
    args = p.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"fan-out {args.fanout}, {args.duration:g} s measured; servers pinned to CPU 1")
    print(
        f"{'layout':>22} {'deliv/s':>9} {'lost':>6} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'max':>7} {'us/dlv':>7} {'cli%':>5}"
    )
    labels = {0: "one SQLite node", 1: "one node (PG, Redis)", 2: "split over two nodes"}
    for count in (0, 1, 2):
        async with database() as db:
            row = await measure(db, count, args)
        lat = row["latency_ms"]
        label = labels[count]
        print(
            f"{label:>22} {row['deliveries_per_s']:>9,.0f} {row['lost']:>6} {lat['p50']:>7} "
            f"{lat['p95']:>7} {lat['p99']:>7} {lat['max']:>7} "
            f"{row['server_us_per_delivery']!s:>7} {row['client_cpu_pct']!s:>5}"
        )


if __name__ == "__main__":
    asyncio.run(main())
