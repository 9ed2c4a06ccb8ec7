"""The schema's revisions: upgrading a database to the newest, and reading where it is.

Owns the glue to Alembic: where the migration scripts are (they ship inside the package as
``collab.migrations``, see pyproject.toml), ``upgrade_schema`` (run by ``Store.open`` and
``collab db upgrade``; ``migrations/env.py`` serializes concurrent upgrades under its
migration lock), and the revision a database is at versus the newest this code knows. It
never changes the schema any other way: every change is an Alembic revision.

Alembic is imported only to upgrade. Reading a database's revision is one plain query of
``alembic_version`` (``file_revision``: on a plain ``sqlite3`` connection of its own, for
``collab serve``'s check before it starts), and the newest revision is read once per
process from the scripts' ``revision`` and ``down_revision`` assignments: Alembic, and the
dialects and templates it loads, cost a server whose schema is current about 11 MB of
memory for nothing (``docs/performance.md``).
"""

from __future__ import annotations

import ast
import sqlite3
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

__all__ = ["current_revision", "file_revision", "head_revision", "upgrade_schema"]

_MIGRATIONS = files("collab.migrations")
_VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps
_HEADS: dict[str, str | None] = {}  # the newest revision, by migrations directory


def _alembic_config(url: str | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade_schema(url: str) -> None:
    """Create or upgrade the schema to the newest revision (blocking: run in a thread)."""
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


def current_revision(connection: Connection) -> str | None:
    """The revision the database's schema is at (``None``: no schema yet)."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    found = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).first()
    return None if found is None else str(found[0])


def file_revision(path: str, timeout: float = 5.0) -> str | None:
    """The revision of the SQLite file at ``path``, read with one query on a ``sqlite3``
    connection of its own (blocking; ``None``: no such file yet, or no schema in it). The
    file is never created, and its journal mode is left as it is.

    Raises:
        sqlite3.Error: the file is not a database, its directory does not exist, or it
            stayed locked for ``timeout`` seconds.
    """
    file = Path(path).absolute()
    try:
        conn = sqlite3.connect(f"{file.as_uri()}?mode=rw", timeout, uri=True)
    except sqlite3.OperationalError:
        if not file.exists() and file.parent.is_dir():
            return None  # a new database, which the upgrade creates
        raise
    try:
        found = conn.execute(f"SELECT version_num FROM {_VERSION_TABLE}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    finally:
        conn.close()
    return None if found is None else str(found[0])


def head_revision() -> str | None:
    """The newest revision the migration scripts know: the one no script revises
    (blocking: it reads them, once per process).

    Raises:
        RuntimeError: the scripts have more than one head (a merge revision is missing).
    """
    where = str(_MIGRATIONS)
    if where not in _HEADS:
        _HEADS[where] = _head_of(_MIGRATIONS)
    return _HEADS[where]


def _head_of(migrations: Traversable) -> str | None:
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in migrations.joinpath("versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        assigned = _assignments(script.read_text(encoding="utf-8"))
        revisions.add(str(assigned["revision"]))
        down = assigned.get("down_revision")
        if isinstance(down, str):
            revised.add(down)
        elif isinstance(down, tuple | list):
            revised.update(map(str, down))
    heads = revisions - revised
    if len(heads) > 1:
        raise RuntimeError(f"the migration scripts have several heads: {sorted(heads)}")
    return next(iter(heads), None)


def _assignments(source: str) -> dict[str, Any]:
    """The literal values a migration script assigns to ``revision`` and
    ``down_revision`` at its top level."""
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = ast.literal_eval(value)
    return found
