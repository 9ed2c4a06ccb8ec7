"""Fan-out across nodes: the same load with every room's members on one node, then split
over two nodes sharing PostgreSQL and Redis. Prints latency percentiles, deliveries/s,
losses and server CPU per delivery (both nodes together), so the cost of the cross-node
hop is the difference between the rows. The first row is one node on SQLite without
Redis: the single-node figure the cluster's cost is compared with.

    .venv/bin/python bench/cluster_bench.py [--fanout 50x10x2@10] [--duration 10]
    .venv/bin/python bench/cluster_bench.py --layouts 0,2 --callgrind /tmp/cluster.out
    .venv/bin/python bench/cluster_bench.py --layouts 2 --profile /tmp/cluster-prof

``--callgrind`` runs every node under callgrind, counting instructions during the
measured window only, and adds instructions per delivery (all nodes together) to each
row: a figure the noise of a shared machine does not move, unlike CPU time. Keep the load
light there (``--fanout 10x10x2@5``): callgrind slows a node down some fifty times.
``--profile`` runs every node under cProfile (CPU time, event loop thread) during the
measured window and writes ``<dir>/<layout>-node<i>.prof``.

Needs PostgreSQL (COLLAB_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test)
and Redis (COLLAB_TEST_REDIS, default redis://127.0.0.1:6379/0) on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

from benchlib.fanout import Timing, parse_fanout, run_fanout
from benchlib.metrics import Usage
from benchlib.process import PROFILED_SERVE, ServerProcess, ServerSpec, running_server

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
    mode: str = "none"  # "callgrind" or "profile": collect during the measured window
    usages: int = 0

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def usage(self) -> Usage:
        # run_fanout reads the usage before typing, when the measured window opens and
        # when it closes: the last two switch collection on and off.
        self.usages += 1
        if self.mode != "none" and self.usages in (2, 3):
            self._collect(self.usages == 2)
        parts = [n.usage() for n in self.nodes]
        return Usage(
            cpu_s=sum(u.cpu_s for u in parts),
            rss_kb=sum(u.rss_kb for u in parts),
            pids=sum(u.pids for u in parts),
            at=max(u.at for u in parts),
        )

    def _collect(self, on: bool) -> None:
        for node in self.nodes:
            if self.mode == "profile":
                os.kill(node.pid, signal.SIGUSR1 if on else signal.SIGUSR2)
            else:
                steps = (["-i", "on"], ["-z"]) if on else (["-d"], ["-i", "off"])
                for step in steps:
                    subprocess.run(
                        ["callgrind_control", *step, str(node.pid)],
                        check=True,
                        capture_output=True,
                    )

    def exit_code(self) -> int | None:
        codes = [n.exit_code() for n in self.nodes]
        return next((c for c in codes if c is not None), None)


def _node_command(args: argparse.Namespace, mode: str, name: str, serve: str) -> str:
    python = f"{ROOT}/.venv/bin/python"
    if mode == "callgrind":
        out = Path(f"{args.callgrind}.{name}")
        for old in out.parent.glob(out.name + ".*"):
            old.unlink()
        return (
            f"valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={out} "
            f"{python} -m collab {serve}"
        )
    if mode == "profile":
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        return f"{python} -c {shlex.quote(PROFILED_SERVE)} {args.profile}/{name}.prof {serve}"
    return f"{ROOT}/.venv/bin/collab {serve}"


def _instructions(out: str) -> int:
    """Instructions counted in the dumps of one node's callgrind run."""
    total = 0
    for path in Path(out).parent.glob(Path(out).name + ".*"):
        m = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.M)
        if m:
            total += int(m.group(1))
    return total


_COUNTERS = ("collab_store_commits", "collab_store_seq_races", "collab_cluster_received")


async def _counters(ports: list[int]) -> dict[str, float]:
    """Some of the nodes' counters, summed: commits and renumbered commits cost the same
    whatever they hold, so they explain a row's figure as much as the relay does."""
    out = dict.fromkeys(_COUNTERS, 0.0)
    async with aiohttp.ClientSession() as session:
        for port in ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                for line in (await response.text()).splitlines():
                    name, _, value = line.partition(" ")
                    name = name.removesuffix("_total")
                    if name in out:
                        out[name] += float(value)
    return out


async def measure(db: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """``count`` nodes on ``db`` with Redis; ``count=0``: one node on SQLite, no Redis (the
    baseline the cluster's cost is compared with)."""
    serve = "serve --host 127.0.0.1 --port {port} --log-level warning"
    if args.commit_interval is not None:
        serve += f" --commit-interval {args.commit_interval}"
    if count:
        serve += f" --db {db} --redis {REDIS}"
    else:
        serve += " --db {tmpdir}/bench.db"
    mode = "callgrind" if args.callgrind else "profile" if args.profile else "none"
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for i in range(max(count, 1)):
            cmd = _node_command(args, mode, f"{count}-node{i}", serve)
            spec = ServerSpec(cmd, ROOT, None, {1}, 300.0 if mode == "callgrind" else 30.0, 30.0)
            nodes.append(await stack.enter_async_context(running_server(spec)))
        group = Nodes(nodes, mode)
        timing = Timing(args.warmup, args.duration, args.drain, 15.0, 32)
        cfg = parse_fanout(args.fanout)[0]
        row = await run_fanout(
            cfg,
            timing,
            "ws://127.0.0.1:{port}/ws/{room}",
            group,  # type: ignore[arg-type]
            ports=[n.port for n in nodes],
        )
        row["counters"] = await _counters([n.port for n in nodes])
    if mode == "callgrind":
        total = sum(
            _instructions(f"{args.callgrind}.{count}-node{i}") for i in range(max(count, 1))
        )
        row["instructions_per_delivery"] = round(total / max(row["delivered"], 1))
    return row


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fanout", default="50x10x2@10")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--drain", type=float, default=5.0)
    p.add_argument(
        "--commit-interval",
        type=float,
        help="the nodes' commit interval (a commit costs the same whatever it holds: at a "
        "light load, as under callgrind, their number would swamp the relay's figures)",
    )
    p.add_argument("--layouts", default="0,1,2", help="rows: 0 SQLite, 1 or more nodes")
    p.add_argument("--callgrind", help="count instructions; output files start with this")
    p.add_argument("--profile", help="cProfile each node into this directory")
    args = p.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"fan-out {args.fanout}, {args.duration:g} s measured; servers pinned to CPU 1")
    print(
        f"{'layout':>22} {'deliv/s':>9} {'lost':>6} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'max':>7} {'us/dlv':>7} {'cli%':>5}" + (f" {'instr/dlv':>10}" if args.callgrind else "")
    )
    labels = {0: "one SQLite node", 1: "one node (PG, Redis)", 2: "split over two nodes"}
    for count in (int(c) for c in args.layouts.split(",")):
        async with database() as db:
            row = await measure(db, count, args)
        lat = row["latency_ms"]
        label = labels.get(count, f"split over {count} nodes")
        print(
            f"{label:>22} {row['deliveries_per_s']:>9,.0f} {row['lost']:>6} {lat['p50']:>7} "
            f"{lat['p95']:>7} {lat['p99']:>7} {lat['max']:>7} "
            f"{row['server_us_per_delivery']!s:>7} {row['client_cpu_pct']!s:>5}"
            + (f" {row['instructions_per_delivery']:>10,}" if args.callgrind else "")
        )
        counts = ", ".join(
            f"{k.removeprefix('collab_')} {v:,.0f}" for k, v in row["counters"].items()
        )
        print(f"{'':>22} (all nodes, whole run: {counts})")


if __name__ == "__main__":
    asyncio.run(main())
