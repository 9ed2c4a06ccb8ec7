"""Alembic environment, async, with batch mode for SQLite's limited ALTER TABLE.

Two ways in: ``collab.store`` passes the database URL in ``config.attributes["url"]``
and runs the upgrade in a worker thread (migration files are read from disk, which must
not happen on the server's event loop); the ``alembic`` command line takes
``COLLAB_DB`` or ``sqlalchemy.url``. A caller may also hand over an open connection in
``config.attributes["connection"]``.
"""

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from collab.config import database_url
from collab.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = config.attributes.get("url") or os.environ.get("COLLAB_DB")
    url = database_url(url) if url else config.get_main_option("sqlalchemy.url")
    assert url is not None
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
        _run(shared)
    else:
        asyncio.run(_run_async())
