"""Alembic environment, async, with batch mode for SQLite's limited ALTER TABLE.

Two ways in: ``collab.store`` passes the database URL in ``config.attributes["url"]``
and runs the upgrade in a worker thread (migration files are read from disk, which must
not happen on the server's event loop); the ``alembic`` command line takes
``COLLAB_DB`` or ``sqlalchemy.url``. A caller may also hand over an open connection in
``config.attributes["connection"]``.

Upgrades are serialized, so several nodes started at once on an empty database all come
up (without it two of them race to create ``alembic_version`` and one dies): on
PostgreSQL by a transaction-level advisory lock taken first in the migration's
transaction, on SQLite by ``flock`` on a lock file beside the database (``<db>.lock``,
left in place: deleting it would let two upgrades lock different files). Whoever gets
the lock second finds the schema current and has nothing to do.
"""

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator

from alembic import context
from sqlalchemy import make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from collab.config import database_url
from collab.store.models import Base

config = context.config
target_metadata = Base.metadata
# pg_advisory_xact_lock key for schema upgrades: "collab" in ASCII, fixed forever.
MIGRATION_LOCK = 0x636F6C6C6162


@contextlib.contextmanager
def _file_lock(url: str) -> Iterator[None]:
    """Hold ``flock`` on ``<database>.lock`` for an SQLite file database (else nothing)."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        yield
        return
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(fd)


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends, so before anything reads the schema.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.attributes.get("url") or os.environ.get("COLLAB_DB")
    url = database_url(url) if url else config.get_main_option("sqlalchemy.url")
    assert url is not None
    return url


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        with _file_lock(shared.engine.url.render_as_string(hide_password=False)):
            _run(shared)
    else:
        with _file_lock(_url()):
            asyncio.run(_run_async(_url()))
