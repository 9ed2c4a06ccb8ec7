"""The schema glue: upgrading a new SQLite file and a new PostgreSQL database to the
newest revision, and reading the revision back."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from collab.config import database_url
from collab.store import Store, upgrade_schema
from collab.store.schema import head_revision
from tests.services import postgres_database


def test_head_revision_is_the_newest_script() -> None:
    """The head is a revision of the shipped migration scripts."""
    head = head_revision()
    assert head is not None
    versions = Path(__file__).parents[2] / "migrations" / "versions"
    assert any(f'revision: str = "{head}"' in path.read_text() for path in versions.glob("*.py"))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_upgrade_brings_a_new_database_to_the_head(tmp_path: Path, engine: str) -> None:
    """A new database has no revision; after ``upgrade_schema`` (twice: the second finds
    nothing to do) it is at the head, and ``Store.schema_status`` says so."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = database_url(str(tmp_path / "new.db"))
        else:
            url = await stack.enter_async_context(postgres_database())
        head = await asyncio.to_thread(head_revision)
        store = Store(url)
        await store.open(upgrade=False)
        stack.push_async_callback(store.close)
        assert await store.schema_status() == (None, head)
        for _ in range(2):
            await asyncio.to_thread(upgrade_schema, url)
        assert await store.schema_status() == (head, head)
