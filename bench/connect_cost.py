"""What one connect to a new room, or one delivered update, costs the server, in
instructions (or profiled calls).

Starts ``collab serve`` as a child (under callgrind, or cProfile, or neither). With
``--load connect`` (the default) it opens ``--warmup`` connections to warm it up, then
``--n`` more, each alone in a new room as ``bench.py --scenarios connections`` does
(connect, SyncStep1/SyncStep2 handshake, push a ~90 B update, one SyncStep1 round trip),
with collection switched on around those only. With ``--load fanout`` it runs
``bench.py``'s fan-out scenario (``--fanout RxCxT@rate``, at a rate the server keeps up
with even under callgrind) and collects over its measured window only, then divides by
the deliveries of that window. Instruction counts do not change with the noise of a
shared machine, unlike connects/s or CPU time.

    .venv/bin/python bench/connect_cost.py --mode callgrind --n 500
    .venv/bin/python bench/connect_cost.py --mode cprofile --n 500 --out /tmp/connect.prof
    .venv/bin/python bench/connect_cost.py --load fanout --fanout 10x10x2@2 --duration 20

callgrind counts every thread of the server (the event loop, the store's reader threads
and its writer); cProfile sees the event loop's thread only. Closing the connections
happens after collection stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from benchlib.connections import _small_update
from benchlib.fanout import Timing, parse_fanout, run_fanout
from benchlib.metrics import Usage, proc_usage
from benchlib.peer import close_all, connect_many, new_session, open_peer
from benchlib.process import PROFILED_SERVE, free_port
from benchlib.wire import SyncStep, encode_sync

ROOT = Path(__file__).resolve().parent.parent


def _server(args: argparse.Namespace, port: int, tmp: str) -> list[str]:
    serve = [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        f"{tmp}/bench.db",
        "--log-level",
        args.log_level,
    ]
    python = [sys.executable, "-P"] if args.pythonpath else [sys.executable]
    if args.mode == "cprofile":
        return [*python, "-c", PROFILED_SERVE, args.out, *serve]
    cmd = [*python, "-m", "collab", *serve]
    if args.mode == "callgrind":
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            *(["--separate-threads=yes"] if os.environ.get("CG_THREADS") else []),
            f"--callgrind-out-file={args.out}",
            *cmd,
        ]
    return cmd


async def _connects(port: int, first: int, n: int, concurrency: int, run: str) -> list[object]:
    update = encode_sync(SyncStep.UPDATE, _small_update())
    session = new_session()

    async def make(i: int) -> object:
        room = f"cost-{run}-{i}"
        peer = await open_peer(session, f"ws://127.0.0.1:{port}/ws/{room}", room)
        await peer.ws.send_bytes(update)
        if len(await peer.round_trip()) <= 2:
            raise ValueError("the room's document did not hold the pushed update")
        return peer

    peers, errors = await connect_many(lambda i: make(first + i), n, concurrency, 120.0)
    if errors:
        raise RuntimeError(f"{len(errors)} connects failed: {errors[:3]}")
    peers.append(session)  # closed with them
    return peers


async def _close(peers: list[object]) -> None:
    session = peers.pop()
    await close_all(peers)  # type: ignore[arg-type]
    await session.close()  # type: ignore[attr-defined]


class _Served:
    """What ``run_fanout`` reads of its server, for a child started here."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port

    def usage(self) -> Usage:
        return proc_usage(self.proc.pid)

    def exit_code(self) -> int | None:
        return self.proc.poll()


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--mode", choices=("callgrind", "cprofile", "none"), default="callgrind")
    p.add_argument("--load", choices=("connect", "fanout"), default="connect")
    p.add_argument("--fanout", default="10x10x2@2", help="--load fanout: RxCxT@rate")
    p.add_argument("--duration", type=float, default=20.0, help="--load fanout: window, s")
    p.add_argument("--n", type=int, default=500, help="measured connects")
    p.add_argument("--warmup", type=int, default=100, help="connects before measuring")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--log-level", default="warning")
    p.add_argument("--out", default="/tmp/collab-connect.out")
    p.add_argument("--pythonpath", help="import collab from here (an export of another commit)")
    args = p.parse_args()
    port = free_port()
    out = Path(args.out)
    for old in out.parent.glob(out.name + "*"):
        old.unlink()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start(_server(args, port, tmp), env, Path(tmp) / "server.log")
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        print(_tail(Path(tmp) / "server.log"), file=sys.stderr)
                        return 1
                    await asyncio.sleep(0.5)
            if args.load == "fanout":
                row = await _fanout(args, proc, port)
                count, unit = row["delivered"], "delivery"
                print(
                    f"{row['config']}: {row['edits']} edits, {count} deliveries, "
                    f"{row['lost']} lost, p50 {row['latency_ms'].get('p50')} ms ({args.mode})"
                )
                return _report(args, out, count, unit)
            run = os.urandom(4).hex()
            warm = await _connects(port, 0, args.warmup, args.concurrency, run)
            await _close(warm)
            await asyncio.sleep(1.0)
            if args.mode == "callgrind":
                _control(proc.pid, "-i", "on")
                _control(proc.pid, "-z")
            elif args.mode == "cprofile":
                os.kill(proc.pid, signal.SIGUSR1)
                await asyncio.sleep(0.5)
            t0 = time.perf_counter()
            peers = await _connects(port, args.warmup, args.n, args.concurrency, run)
            await asyncio.sleep(0.5)  # the last group commit
            took = time.perf_counter() - t0
            if args.mode == "callgrind":
                _control(proc.pid, "-d")
                _control(proc.pid, "-i", "off")
                await asyncio.sleep(1.0)
            elif args.mode == "cprofile":
                os.kill(proc.pid, signal.SIGUSR2)
                await asyncio.sleep(1.0)
            await _close(peers)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    print(f"{args.n} connects in {took:.2f} s ({args.mode})")
    return _report(args, out, args.n, "connect")


async def _fanout(args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int) -> dict:
    """Run the fan-out scenario with collection on over its measured window only."""

    def switch(on: bool) -> None:
        if args.mode == "callgrind":
            if on:
                _control(proc.pid, "-i", "on")
                _control(proc.pid, "-z")
            else:
                _control(proc.pid, "-d")
                _control(proc.pid, "-i", "off")
        elif args.mode == "cprofile":
            os.kill(proc.pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    (cfg,) = parse_fanout(args.fanout)
    timing = Timing(
        warmup=3.0,
        duration=args.duration,
        drain=30.0,
        connect_timeout=120.0,
        concurrency=args.concurrency,
        on_window=switch,
    )
    url = "ws://127.0.0.1:{port}/ws/{room}"
    row = await run_fanout(cfg, timing, url, _Served(proc, port))  # type: ignore[arg-type]
    await asyncio.sleep(1.0)  # the dump is written
    return row


def _report(args: argparse.Namespace, out: Path, count: int, unit: str) -> int:
    if args.mode == "callgrind":
        total = 0
        for path in out.parent.glob(out.name + ".*"):  # the dump; not the empty end
            m = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.M)
            if m:
                total += int(m.group(1))
        print(f"instructions: {total:,} = {total / max(count, 1):,.0f} per {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
