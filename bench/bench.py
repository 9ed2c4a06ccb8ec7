"""collab load benchmark: starts the server, drives it over y-websocket, prints a report.

Run from the project root:  .venv/bin/python bench/bench.py --help
Every scenario (and every fanout configuration) gets a freshly started server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchlib.connections import ConnConfig, run_connections
from benchlib.fanout import Timing, parse_fanout, run_fanout
from benchlib.late_join import JoinConfig, run_late_join
from benchlib.peer import SCENARIO_ERRORS
from benchlib.process import ServerProcess, ServerSpec, running_server
from benchlib.report import render
from benchlib.storm import StormConfig, run_storm
from benchlib.trace import load_trace_doc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CMD = (
    ".venv/bin/collab serve --host 127.0.0.1 --port {port} "
    "--db {tmpdir}/bench.db --log-level warning"
)
DEFAULT_TRACE = ROOT / "tests" / "data" / "automerge-paper.json.gz"
DEFAULT_SCENARIOS = ("fanout", "late_join", "connections")
SCENARIOS = (*DEFAULT_SCENARIOS, "storm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    a = p.add_argument
    a("--scenarios", default=",".join(DEFAULT_SCENARIOS),
      help=f"comma-separated, of {', '.join(SCENARIOS)}")  # fmt: skip
    a("--server-cmd", default=DEFAULT_CMD, help="{port}, {tmpdir} are filled in; no shell; "
      "runs in the project root")  # fmt: skip
    a("--url-template", default="ws://127.0.0.1:{port}/ws/{room}", help="room URL")
    a(
        "--hocuspocus-url",
        default="ws://127.0.0.1:{port}/hocuspocus",
        help="the Hocuspocus endpoint, for --protocols hocuspocus",
    )
    a(
        "--protocols",
        default="ws",
        help="fanout over these, one row each: ws (the URL template), hocuspocus, or both",
    )
    a("--port", type=int, default=0, help="server port (0 = pick a free one)")
    a("--start-timeout", type=float, default=30.0, help="seconds for the port to open")
    a("--stop-timeout", type=float, default=5.0, help="seconds from SIGTERM to SIGKILL")
    a("--pin-server", type=int, metavar="CPU", help="pin the server to this CPU")
    a("--pin-client", type=int, metavar="CPU", help="pin this client to this CPU")
    a("--no-uvloop", action="store_true", help="use asyncio's loop even if uvloop exists")
    a("--max-seconds", type=float, default=600.0, help="abort the whole run after this")
    a("--json", type=Path, metavar="FILE", help="also write the full summary as JSON")
    a("--cpu-flag", type=float, default=80.0, help="flag results where client CPU%% is above")
    g = p.add_argument_group("fanout").add_argument
    g("--fanout", default="100x10x2@10", help="RxCxT@rate[,...]: R rooms x C clients, "
      "T typists per room, each typing rate edits/s")  # fmt: skip
    g("--warmup", type=float, default=3.0, help="seconds of typing before measuring")
    g("--duration", type=float, default=10.0, help="seconds of the measured window")
    g("--drain", type=float, default=3.0, help="seconds to wait for late deliveries")
    g("--concurrency", type=int, default=32, help="simultaneous connects")
    g("--connect-timeout", type=float, default=20.0, help="seconds per connect+handshake")
    g = p.add_argument_group("late_join").add_argument
    g("--trace", type=Path, default=DEFAULT_TRACE, help="josephg/editing-traces JSON (.gz)")
    g("--join-repeat", type=int, default=1, help="document = the trace's text N times")
    g("--joins", type=int, default=5, help="sequential joins")
    g("--burst", type=int, default=20, help="simultaneous joins")
    g("--join-timeout", type=float, default=60.0, help="seconds per join and for seeding")
    g("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "collab-bench-cache",
      help="where the replayed trace document is cached")  # fmt: skip
    g = p.add_argument_group("connections").add_argument
    g("--conn", type=int, default=2000, help="idle connections (one room each)")
    g("--settle", type=float, default=1.0, help="seconds before each RSS reading")
    g = p.add_argument_group("storm (a restart under connected clients)").add_argument
    g("--storm-clients", type=int, default=4000, help="connected clients")
    g("--storm-rooms", type=int, default=1000, help="rooms they are spread over")
    g("--storm-timeout", type=float, default=120.0, help="seconds for all to be back")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if min(args.join_repeat, args.conn, args.concurrency) < 1 or min(args.joins, args.burst) < 0:
        p.error("--join-repeat, --conn, --concurrency must be >= 1; --joins, --burst >= 0")
    try:
        args.fanout_configs = parse_fanout(args.fanout)
    except ValueError as e:
        p.error(str(e))
    return args


def _raise_fd_limit() -> None:
    # thousands of sockets; the server inherits the raised limit too
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _with_server(
    args: argparse.Namespace,
    body: Callable[[ServerProcess], Awaitable[dict[str, Any]]],
    label: str,
) -> dict[str, Any]:
    spec = ServerSpec(
        args.server_cmd,
        ROOT,
        args.port or None,
        None if args.pin_server is None else {args.pin_server},
        args.start_timeout,
        args.stop_timeout,
    )
    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", file=sys.stderr, flush=True)
    try:
        async with running_server(spec) as server:
            return await body(server)
    except SCENARIO_ERRORS as e:
        print(f"  {label} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return {"error": f"{type(e).__name__}: {e}"[:300]}


async def run(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    results: dict[str, Any] = summary["results"]
    url = args.url_template
    if "fanout" in args.scenarios:
        timing = Timing(
            args.warmup, args.duration, args.drain, args.connect_timeout, args.concurrency
        )
        rows: list[dict[str, Any]] = []
        results["fanout"] = rows
        for protocol in [p.strip() for p in args.protocols.split(",") if p.strip()]:
            hocus = protocol == "hocuspocus"
            target = args.hocuspocus_url if hocus else url
            for cfg in args.fanout_configs:
                label = cfg.label + (" hocuspocus" if hocus else "")
                row = await _with_server(
                    args,
                    partial(run_fanout, cfg, timing, target, hocuspocus=hocus),
                    f"fanout {label}",
                )
                rows.append({"config": label} | row)
    if "late_join" in args.scenarios:
        print(
            f"[{time.strftime('%H:%M:%S')}] building trace document x{args.join_repeat} ...",
            file=sys.stderr,
            flush=True,
        )
        # a thread keeps signals and --max-seconds responsive (an abort waits for it to end)
        doc = await asyncio.to_thread(load_trace_doc, args.trace, args.join_repeat, args.cache_dir)
        jc = JoinConfig(args.joins, args.burst, args.join_timeout)
        results["late_join"] = await _with_server(
            args, partial(run_late_join, doc, jc, url), "late_join"
        )
    if "connections" in args.scenarios:
        cc = ConnConfig(args.conn, args.concurrency, args.connect_timeout, args.settle)
        results["connections"] = await _with_server(
            args, partial(run_connections, cc, url), "connections"
        )
    if "storm" in args.scenarios:
        sc = StormConfig(
            args.storm_clients, args.storm_rooms, args.concurrency, args.storm_timeout
        )
        results["storm"] = await _with_server(args, partial(run_storm, sc, url), "storm")


def _runner(no_uvloop: bool) -> tuple[str, Callable[[Coroutine[Any, Any, None]], None]]:
    if not no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            return "uvloop", uvloop.run
    return "asyncio", asyncio.run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_fd_limit()
    if args.pin_client is not None:
        os.sched_setaffinity(0, {args.pin_client})
    loop_name, run_loop = _runner(args.no_uvloop)
    summary: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "loop": loop_name,
            "cpus": os.cpu_count(),
            "pin_server": args.pin_server,
            "pin_client": args.pin_client,
            "server_cmd": args.server_cmd,
            "url_template": args.url_template,
            "python": sys.version.split()[0],
            "aiohttp": version("aiohttp"),
            "pycrdt": version("pycrdt"),
            "args": {k: str(v) for k, v in vars(args).items() if k != "fanout_configs"},
        },
        "results": {},
    }

    async def bounded() -> None:
        # SIGTERM cancels the run like --max-seconds does, so the server still gets stopped
        main_task = asyncio.current_task()
        if main_task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        try:
            async with asyncio.timeout(args.max_seconds):
                await run(args, summary)
        except TimeoutError:
            summary["aborted"] = f"--max-seconds {args.max_seconds:g} reached"
        except asyncio.CancelledError:
            summary["aborted"] = "stopped by a signal"

    t0 = time.monotonic()
    try:
        run_loop(bounded())
    except KeyboardInterrupt:
        summary["aborted"] = "interrupted"
    summary["meta"]["wall_s"] = round(time.monotonic() - t0, 1)
    print(render(summary, args.cpu_flag))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary.get("aborted") else 0


if __name__ == "__main__":
    sys.exit(main())
