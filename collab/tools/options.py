"""What the commands share: the ``--config``, ``--db`` and ``--log-*`` flags, durations,
the database file.

A leaf of ``collab.tools``: the command modules import it, it imports none of them.
"""

from __future__ import annotations

import argparse
import os
import re

from collab.config import Config, database_url

__all__ = ["common", "database_exists", "database_path", "seconds"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def common(parser: argparse.ArgumentParser) -> None:
    """Add the flags every command takes: ``--config``, ``--db`` and the logging ones (any
    command that opens a database may migrate it, and ``--log-level debug`` shows how)."""
    parser.add_argument("--config", help="TOML settings file (or COLLAB_CONFIG)")
    parser.add_argument("--db", help="SQLite path or SQLAlchemy URL (default ./collab.db)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["text", "json"])


def seconds(text: str) -> float:
    """A duration such as ``3600``, ``90m`` or ``12h`` in seconds.

    Raises:
        ValueError: not a number with an optional s/m/h/d/w unit.
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}: use e.g. 3600, 90m, 12h, 30d")
    return float(match[1]) * _SECONDS[match[2]]


def database_path(config: Config) -> str | None:
    """The absolute path of the SQLite file ``config`` names (``None`` for another engine or
    an in-memory database)."""
    from sqlalchemy import make_url

    url = make_url(database_url(config.db))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)


def database_exists(config: Config) -> bool:
    """False only for an SQLite file that is not there (a mistyped ``--db``): the commands
    that read a database must not create an empty one. Other engines are asked by the
    command itself."""
    path = database_path(config)
    return path is None or os.path.exists(path)
