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
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .metrics import Usage, proc_usage

__all__ = ["ServerSpec", "ServerProcess", "free_port", "running_server"]


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

    def __init__(self, proc: subprocess.Popen[bytes], port: int, tmpdir: Path) -> None:
        self.proc = proc
        self.port = port
        self.tmpdir = tmpdir

    @property
    def pid(self) -> int:
        return self.proc.pid

    def usage(self) -> Usage:
        return proc_usage(self.proc.pid)

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.tmpdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float) -> None:
        """Return once the port accepts a TCP connection.

        Raises:
            RuntimeError: the process exited, or the port did not open in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
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
        raise RuntimeError(f"server did not listen on port {self.port} within {timeout:.0f} s")

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM the process group, then SIGKILL it after timeout seconds; return the code."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return self.proc.poll()


@contextlib.asynccontextmanager
async def running_server(spec: ServerSpec) -> AsyncIterator[ServerProcess]:
    """Start a fresh server (own temporary directory) and stop it on exit, even on errors."""
    tmpdir = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    port = spec.port or free_port()
    argv = shlex.split(spec.cmd.format(port=port, tmpdir=tmpdir))
    with open(tmpdir / "server.log", "wb") as log:
        # own session = own process group, so stop() reaches wrappers' children too
        proc = subprocess.Popen(
            argv, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(proc, port, tmpdir)
    try:
        # set even without --pin-server: a pinned client must not hand its CPU down
        os.sched_setaffinity(proc.pid, spec.cpus or set(range(os.cpu_count() or 1)))
        await server.wait_ready(spec.start_timeout)
        yield server
    except BaseException:
        tail = server.log_tail()
        if tail:
            print(f"--- server log (tail) ---\n{tail}\n---", flush=True)
        raise
    finally:
        await server.stop(spec.stop_timeout)
        shutil.rmtree(tmpdir, ignore_errors=True)
