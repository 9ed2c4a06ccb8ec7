"""Real PostgreSQL and Redis for the multi-node tests.

They run as local services on the development machines and in CI (127.0.0.1:5432 with
trust auth, 127.0.0.1:6379). Without them the tests skip, unless
``COLLAB_REQUIRE_SERVICES=1`` (set by .ci/run), which turns the skip into a failure.
A test that stops a service runs its own: ``RedisProcess``, ``PostgresProcess``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from collab.config import database_url
from collab.store import Store
from tests.conftest import eventually
from tests.process import free_port

PG_ADMIN = os.environ.get("COLLAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("COLLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")


def missing(what: str) -> None:
    """Skip for ``what`` a machine lacks, or fail under ``COLLAB_REQUIRE_SERVICES=1``."""
    if os.environ.get("COLLAB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"COLLAB_REQUIRE_SERVICES=1 but {what}")
    pytest.skip(what)


@asynccontextmanager
async def open_store(engine: str, tmp_path: Path, **options: Any) -> AsyncIterator[Store]:
    """A Store with its schema, on a real SQLite file or a fresh PostgreSQL database."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = database_url(str(tmp_path / "s.db"))
        else:
            url = await stack.enter_async_context(postgres_database())
        store = Store(url, **{"commit_interval": 0.01, **options})
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database; yields its SQLAlchemy URL."""
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
    name = "collab_test_" + uuid.uuid4().hex[:12]
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def require_redis(url: str = REDIS_URL) -> str:
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        missing(f"Redis is not reachable at {url}: {exc}")
    finally:
        await client.aclose()
    return url


class RedisProcess:
    """A redis-server of our own, which a test may stop and start again; with
    ``password``, one that requires it (``url`` carries it)."""

    def __init__(self, tmp: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed")
        assert binary is not None
        self.binary = binary
        self.port = free_port()
        self.tmp = tmp
        self.password = password
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmp),
            *(("--requirepass", self.password) if self.password is not None else ()),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def up() -> bool:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
            try:
                return bool(await client.ping())
            except (OSError, redis.RedisError):
                return False
            finally:
                await client.aclose()

        await eventually(up, timeout=10, what="redis-server start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class PostgresProcess:
    """A PostgreSQL cluster of our own (initdb into a temporary directory, on a free
    port), which a test may restart with pg_ctl. Run as the ``postgres`` user when this
    process is root (as in CI), since PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            missing("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing("running PostgreSQL as root needs a postgres OS user")
            self.user = ["runuser", "-u", "postgres", "--"]
        self.root: Path | None = None  # made by start()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    async def _run(self, *argv: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.user,
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, (argv, output.decode(errors="replace"))

    async def start(self) -> None:
        """initdb a new cluster and start it; returns once it accepts connections."""
        # Not under pytest's tmp_path: its /tmp/pytest-of-root is closed to other users.
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="collab-pg-"))
        self.root = root
        if self.user:
            owner = pwd.getpwnam("postgres")
            await asyncio.to_thread(os.chown, root, owner.pw_uid, owner.pw_gid)
        await self._run(
            str(self.bin / "initdb"),
            "--auth=trust",
            "--username=postgres",
            "--no-sync",
            "--encoding=UTF8",
            "-D",
            str(self.data),
        )
        settings = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\n"
        )
        with await asyncio.to_thread(open, self.data / "postgresql.conf", "a") as conf:
            await asyncio.to_thread(conf.write, settings)
        await self._pg_ctl("start")

    async def _pg_ctl(self, action: str, *options: str) -> None:
        log = str(self.data.parent / "postgres.log")
        await self._run(
            str(self.bin / "pg_ctl"), action, "-w", "-D", str(self.data), "-l", log, *options
        )

    async def restart(self) -> None:
        """A fast restart: PostgreSQL ends every session, checkpoints and starts again."""
        await self._pg_ctl("restart", "-m", "fast")

    async def stop(self) -> None:
        """Stop the cluster if it runs, and remove its directory."""
        if self.root is None:
            return
        if await asyncio.to_thread((self.data / "postmaster.pid").exists):
            await self._pg_ctl("stop", "-m", "immediate")
        await asyncio.to_thread(shutil.rmtree, self.root, True)


@asynccontextmanager
async def postgres_process() -> AsyncIterator[PostgresProcess]:
    """A started ``PostgresProcess``, stopped and removed afterwards."""
    postgres = PostgresProcess()
    try:
        await postgres.start()
        yield postgres
    finally:
        await postgres.stop()
