"""``collab backup`` against a real server under write load and real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from collab.config import Config
from collab.http.state import HUB
from collab.tools.backup import backup, sqlite_path
from collab.tools.cli import main
from tests.conftest import editor, eventually, start_server
from tests.tools.test_dump import query, served_texts


async def test_backup_under_write_load_restores_every_committed_document(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A backup taken while two editors type restores, on a new server, every document
    committed before it started; the copy passes PRAGMA integrity_check."""
    config = config.replace(max_updates_per_second=0)  # the typists are faster than people
    copy = tmp_path / "backup.db"
    quiet = {f"doc-{i}": f"document {i}: " + "lorem ipsum " * 2000 for i in range(12)}
    stop = asyncio.Event()
    typed = {"typing-a": 0, "typing-b": 0}

    async def typist(server_url: Callable[[str], str], room: str) -> None:
        async with editor(session, server_url(room)) as e:
            while not stop.is_set():
                e.text += "x"
                typed[room] += 1
                await asyncio.sleep(0.002)

    async with start_server(config) as server:
        for room, text in quiet.items():
            async with editor(session, server.url(room)) as e:
                for start in range(0, len(text), 500):
                    e.text += text[start : start + 500]
        hub = server.app[HUB]
        await hub.store.flush()
        tasks = [asyncio.create_task(typist(server.url, room)) for room in typed]
        await eventually(lambda: min(typed.values()) > 50, what="both typists typing")
        await hub.store.flush()
        before: dict[int, int] = dict(
            await query(config.db, "SELECT doc_id, max(seq) FROM updates GROUP BY 1")
        )
        rows_before = (await query(config.db, "SELECT count(*) FROM updates"))[0][0]
        # Small steps with pauses: the server commits between them, many times over.
        result = await asyncio.to_thread(backup, config.db, copy, pages=4, pause=0.005)
        rows_after = (await query(config.db, "SELECT count(*) FROM updates"))[0][0]
        stop.set()
        await asyncio.gather(*tasks)
    assert result.steps > 10 and result.integrity == "ok"
    assert rows_after > rows_before, "the server did not write while the backup ran"
    assert await query(copy, "PRAGMA integrity_check") == [("ok",)]
    # The copy is a snapshot: every document's log is whole (1..n, no holes), and holds
    # at least what was committed before the backup started.
    copied = await query(copy, "SELECT doc_id, count(*), max(seq) FROM updates GROUP BY 1")
    assert {doc for doc, _, _ in copied} == set(before)
    for doc_id, count, last in copied:
        assert count == last >= before[doc_id]
    restored = config.replace(db=str(copy))
    served = await served_texts(restored, session, [*quiet, *typed])
    assert served[: len(quiet)] == list(quiet.values())
    for text in served[len(quiet) :]:
        assert len(text) >= 50 and text == "x" * len(text)


def test_backup_refuses_other_databases_and_existing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Backup names pg_dump for a non-SQLite URL, and will not overwrite without --force."""
    assert main(["backup", str(tmp_path / "b.db"), "--db", "postgresql+asyncpg://h/db"]) == 2
    assert "pg_dump" in capsys.readouterr().err
    db = tmp_path / "collab.db"
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    target = tmp_path / "copy.db"
    assert main(["backup", str(target), "--db", str(db)]) == 0
    assert "integrity ok" in capsys.readouterr().out
    assert main(["backup", str(target), "--db", str(db)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["backup", str(target), "--db", str(db), "--force"]) == 0


@pytest.mark.parametrize(
    ("db", "path"),
    [
        ("collab.db", "collab.db"),
        ("sqlite+aiosqlite:///rel/c.db", "rel/c.db"),
        ("sqlite+aiosqlite:////abs/c.db", "/abs/c.db"),
    ],
)
def test_sqlite_path(db: str, path: str) -> None:
    """The db setting names a file as a bare path or an SQLite URL."""
    assert sqlite_path(db) == Path(path)
