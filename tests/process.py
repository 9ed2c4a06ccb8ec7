"""Run ``collab serve`` as a real subprocess, for tests of signals and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.conftest import TIMEOUT_FACTOR, eventually

ROOT = Path(__file__).parent.parent

# ``collab serve`` as ``python -m collab`` runs it, but first with an open-file limit
# (soft AND hard, so raising the soft one to the hard one gains nothing) and/or without
# uvloop (an optional extra: a server without it runs asyncio's own loop).
_LAUNCH = """
import resource, sys
nofile, loop = int(sys.argv.pop(1)), sys.argv.pop(1)
if nofile:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
if loop == "asyncio":
    sys.modules["uvloop"] = None  # makes "import uvloop" fail, as where it is not installed
from collab.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A ``collab serve`` child process."""

    process: asyncio.subprocess.Process
    port: int
    log: Path

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{room}"

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout * TIMEOUT_FACTOR)


async def start(
    db: Path | str,
    log: Path,
    *args: str,
    port: int | None = None,
    scheme: str = "http",
    ssl_context: ssl.SSLContext | None = None,
    env: dict[str, str] | None = None,
    nofile: int | None = None,
    loop: str = "default",
) -> ServerProcess:
    """Start ``python -m collab serve`` and wait until it answers /healthz.

    Args:
        db: an SQLite file, or a database URL (``postgresql+asyncpg://...``).
        env: environment variables to add, such as ``COLLAB_*`` settings without a flag.
        nofile: the child's soft and hard open-file limit.
        loop: ``asyncio`` runs the child without uvloop; ``default`` as installed.
    """
    port = port or free_port()
    out = await asyncio.to_thread(open, log, "ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if nofile is None and loop == "default":
        launch = ["-m", "collab"]
    else:
        launch = ["-c", _LAUNCH, str(nofile or 0), loop]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *launch,
        "serve",
        "--port",
        str(port),
        "--db",
        str(db),
        *args,
        stdout=out,
        stderr=out,
        env=env,
        cwd=ROOT,
    )
    out.close()
    server = ServerProcess(process, port, log)

    async def healthy() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"server exited with {process.returncode}: see {log}")
        try:
            connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{scheme}://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    try:
        await eventually(healthy, timeout=20, what="server start")
    except BaseException:
        # A server that never became healthy must not outlive the test that started it.
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return server
