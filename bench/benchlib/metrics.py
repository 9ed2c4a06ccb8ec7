"""Measurements: percentiles, /proc CPU and RSS of a process tree, the client's own load.

Never starts or stops a process: it only reads /proc and the client's rusage.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClientLoad", "LoadSample", "Usage", "proc_usage", "summarize"]

_TICK = os.sysconf("SC_CLK_TCK")


def summarize(samples: list[float], digits: int = 2) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max of samples (nearest-rank); None values when empty."""
    n = len(samples)
    if n == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(samples)

    def rank(q: float) -> float:
        return round(s[min(n - 1, max(0, int(q * n + 0.5) - 1))], digits)

    return {"n": n, "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) and resident memory of a process and its descendants."""

    cpu_s: float
    rss_kb: int
    pids: int
    at: float


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we were listing
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def proc_usage(pid: int) -> Usage:
    """Sum /proc/<pid>/stat utime+stime and /proc/<pid>/status VmRSS over pid's process tree.

    A wrapper (env, taskset, a shell) or a multi-process server is counted whole; CPU of
    descendants that already exited is not.
    """
    tree = _children()
    todo, cpu_ticks, rss_kb, count = [pid], 0, 0, 0
    while todo:
        p = todo.pop()
        todo.extend(tree.get(p, ()))
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        cpu_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb += int(line.split()[1])
        count += 1
    return Usage(cpu_ticks / _TICK, rss_kb, count, time.monotonic())


@dataclass(frozen=True, slots=True)
class LoadSample:
    """The benchmark client's CPU% over a window and its event-loop lag percentiles (ms)."""

    cpu_pct: float
    lag_p99_ms: float | None
    lag_max_ms: float | None


class ClientLoad:
    """Measure this process's CPU and event-loop lag between start() and stop().

    Lag is how late a 10 ms timer fires: when it grows, receipt timestamps (and so the
    latencies) include the client's own queueing.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._lags: list[float] = []
        self._t0 = self._cpu0 = 0.0

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self._lags.append((time.perf_counter() - t - 0.01) * 1000)

    def start(self) -> None:
        self._lags = []
        self._t0, self._cpu0 = time.monotonic(), self._cpu()
        self._task = asyncio.create_task(self._watch())

    def stop(self) -> LoadSample:
        if self._task is not None:
            self._task.cancel()
        wall = max(time.monotonic() - self._t0, 1e-9)
        lag = summarize(self._lags)
        p99, mx = lag["p99"], lag["max"]
        return LoadSample(
            round(100 * (self._cpu() - self._cpu0) / wall, 1),
            None if p99 is None else float(p99),
            None if mx is None else float(mx),
        )
