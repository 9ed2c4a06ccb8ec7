"""The schema's revisions: upgrading a database to the newest, and reading where it is.

Owns the glue to Alembic: where the migration scripts are (they ship inside the package as
``collab.migrations``, see pyproject.toml), ``upgrade_schema`` (run by ``Store.open`` and
``collab db upgrade``; ``migrations/env.py`` serializes concurrent upgrades under its
migration lock), and the revision a database is at versus the newest this code knows. It
never changes the schema any other way: every change is an Alembic revision.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

__all__ = ["current_revision", "head_revision", "upgrade_schema"]

_MIGRATIONS = files("collab.migrations")


def _alembic_config(url: str | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade_schema(url: str) -> None:
    """Create or upgrade the schema to the newest revision (blocking: run in a thread)."""
    command.upgrade(_alembic_config(url), "head")


def current_revision(connection: Connection) -> str | None:
    """The revision the database's schema is at (``None``: no schema yet)."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision the migration scripts know (blocking: it reads them)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
