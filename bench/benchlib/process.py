"""The server under test as a child process: start, wait for its port, measure, stop.

Only ever signals the process group it started itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .metrics import Usage, proc_usage

__all__ = ["PROFILED_SERVE", "ServerProcess", "ServerSpec", "free_port", "running_server"]

PROFILED_SERVE = """
import cProfile, signal, sys, time
out = sys.argv.pop(1)
prof = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time: GIL waits do not count
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
def _stop(*_):
    prof.disable()
    prof.dump_stats(out)
signal.signal(signal.SIGUSR2, _stop)
from collab.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""
"""``python -c PROFILED_SERVE OUT serve ...``: ``collab serve`` under cProfile, in CPU time,
switched on by SIGUSR1; SIGUSR2 stops it and writes the stats to OUT."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start the server: a command template with {port} and {tmpdir}."""

    cmd: str
    cwd: Path
    port: int | None
    cpus: set[int] | None
    start_timeout: float
    stop_timeout: float


class ServerProcess:
    """One running server; use through running_server()."""

    def __init__(
        self, proc: asyncio.subprocess.Process, port: int, tmpdir: Path, spec: ServerSpec
    ) -> None:
        self.proc = proc
        self.port = port
        self.tmpdir = tmpdir
        self.spec = spec

    @property
    def pid(self) -> int:
        return self.proc.pid

    def usage(self) -> Usage:
        return proc_usage(self.proc.pid)

    def exit_code(self) -> int | None:
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.tmpdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self) -> None:
        """Return once the port accepts a TCP connection; bound it with asyncio.timeout().

        Raises:
            RuntimeError: the process exited first.
        """
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def restart(self) -> tuple[float, float]:
        """Stop the server (SIGTERM, as a deploy does) and start the same command again on
        the same port and temporary directory (its database survives). Returns the
        seconds the old process took to exit, and then the new one to listen.

        Raises:
            RuntimeError: the new process exited or did not listen in time.
        """
        clock = asyncio.get_running_loop().time
        t0 = clock()
        await self.stop(self.spec.stop_timeout)
        t1 = clock()
        self.proc = await _spawn(self.spec, self.port, self.tmpdir, "ab")
        try:
            async with asyncio.timeout(self.spec.start_timeout):
                await self.wait_ready()
        except TimeoutError:
            raise RuntimeError(f"server did not listen again on port {self.port}") from None
        return t1 - t0, clock() - t1

    async def stop(self, grace: float) -> int | None:
        """SIGTERM the process group, SIGKILL it if still there after grace seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.proc.wait()
        return self.proc.returncode


def _log_file(tmpdir: Path, mode: str = "wb") -> BinaryIO:
    return open(tmpdir / "server.log", mode)


async def _spawn(
    spec: ServerSpec, port: int, tmpdir: Path, mode: str = "wb"
) -> asyncio.subprocess.Process:
    argv = shlex.split(spec.cmd.format(port=port, tmpdir=tmpdir))
    with _log_file(tmpdir, mode) as log:
        # own session = own process group, so stop() reaches wrappers' children too
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # set even without --pin-server: a pinned client must not hand its CPU down
    os.sched_setaffinity(proc.pid, spec.cpus or set(range(os.cpu_count() or 1)))
    return proc


@contextlib.asynccontextmanager
async def running_server(spec: ServerSpec) -> AsyncIterator[ServerProcess]:
    """Start a fresh server (own temporary directory) and stop it on exit, even on errors.

    Raises:
        RuntimeError: the server exited or did not listen within spec.start_timeout.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    port = spec.port or free_port()
    server = ServerProcess(await _spawn(spec, port, tmpdir), port, tmpdir, spec)
    try:
        try:
            async with asyncio.timeout(spec.start_timeout):
                await server.wait_ready()
        except TimeoutError:
            raise RuntimeError(
                f"server did not listen on port {port} within {spec.start_timeout:g} s"
            ) from None
        yield server
    except Exception:  # not on cancellation (--max-seconds): that is no server problem
        tail = server.log_tail()
        if tail:
            print(f"--- server log (tail) ---\n{tail}\n---", flush=True)
        raise
    finally:
        await server.stop(spec.stop_timeout)
        shutil.rmtree(tmpdir, ignore_errors=True)
