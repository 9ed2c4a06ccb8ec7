"""Backups: ``collab backup``, a consistent copy of a live SQLite database file.

The copy uses SQLite's online backup API from one read transaction, so it is the database
as of the moment the backup started, it finishes however busy the server is, and (in WAL
mode, which the server always uses) the server's writes never wait for it; see
docs/backups.md. This is not a query of collab's schema but a page copy by the sqlite3
driver, plus ``PRAGMA integrity_check`` on the finished copy, which is why it is not in
``collab.store``. Nothing here runs inside the server process. Moving documents between
servers is ``dump.py``'s job.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["BackupResult", "NotSQLite", "backup", "sqlite_path"]


class NotSQLite(ValueError):
    """The database is not an SQLite file, so there is no file to copy."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What ``backup`` did."""

    path: Path
    bytes: int
    pages: int
    steps: int
    seconds: float
    integrity: str
    """``ok``, or the first problem ``PRAGMA integrity_check`` found in the copy."""


def sqlite_path(db: str) -> Path:
    """The file behind the ``db`` setting.

    Raises:
        NotSQLite: ``db`` is a URL of another database, or an in-memory SQLite one.
    """
    if "://" not in db:
        path = db
    else:
        url = urlsplit(db)
        if not url.scheme.startswith("sqlite"):
            raise NotSQLite(
                f"backup copies SQLite files only, and {url.scheme} is not SQLite: use the "
                "database's own tool (PostgreSQL: pg_dump -Fc), or `collab dump` to copy "
                "the documents"
            )
        # sqlite:///relative.db and sqlite:////absolute.db: the path follows the third /.
        path = unquote(url.path[1:]) if url.path.startswith("/") else unquote(url.path)
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        raise NotSQLite("an in-memory database has no file to back up")
    return Path(path)


def backup(
    db: str, target: Path, *, pages: int = 1024, pause: float = 0.01, force: bool = False
) -> BackupResult:
    """Copy the SQLite database ``db`` to ``target`` while a server may be writing to it.

    The copy is the database as of the moment the backup started: it holds one read
    transaction for the whole copy. That is what lets it finish at all under writes:
    SQLite restarts a page-by-page backup whenever another connection commits, unless the
    backup's own connection holds a read snapshot, and a server committing every 50 ms
    would restart it forever. In WAL mode (the server always uses it) the snapshot never
    blocks the server's writer, which keeps committing to the WAL; ``pages`` at a time
    with a ``pause`` between steps only keeps the copy from hogging the disk. The copy is
    written next to ``target``, checked with ``PRAGMA integrity_check``, and renamed into
    place, so ``target`` is never a partial file.

    Raises:
        NotSQLite: ``db`` is not an SQLite file.
        FileNotFoundError: there is no database at ``db``.
        FileExistsError: ``target`` exists and ``force`` is false.
    """
    source = sqlite_path(db)
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists (--force overwrites it)")
    if target.resolve() == source.resolve():
        raise ValueError("the backup cannot replace the database itself")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    steps = 0
    total = 0

    def progress(_status: int, remaining: int, pages_total: int) -> None:
        nonlocal steps, total
        steps += 1
        total = pages_total
        if remaining and pause > 0:
            time.sleep(pause)

    try:
        integrity = _copy(source, partial, pages if _in_wal_mode(source) else -1, progress)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    if integrity != "ok":
        # Kept under its .partial name, for a look; never where a good backup would be.
        return BackupResult(partial, partial.stat().st_size, total, steps, seconds, integrity)
    with open(partial, "rb+") as copy:
        os.fsync(copy.fileno())
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size, total, steps, seconds, integrity)


def _in_wal_mode(path: Path) -> bool:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return bool(conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal")
    finally:
        conn.close()


def _copy(
    source: Path, target: Path, pages: int, progress: Callable[[int, int, int], object]
) -> str:
    src = sqlite3.connect(source, timeout=30, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            # pages=-1 outside WAL mode: there a read transaction blocks writers, so the
            # copy is done in one step.
            src.backup(dst, pages=pages, progress=progress)
            src.execute("COMMIT")
            # A self-contained file: no -wal beside it to forget when copying it around.
            dst.execute("PRAGMA journal_mode=DELETE")
            return str(dst.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()
