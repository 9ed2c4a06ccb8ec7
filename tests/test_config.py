"""Config from an injected environment mapping."""

from __future__ import annotations

import pytest

from collab.config import Config, database_url


def test_defaults() -> None:
    """With nothing set, the server binds localhost:1234 and uses ./collab.db."""
    config = Config.from_env({})
    assert (config.host, config.port, config.db) == ("127.0.0.1", 1234, "collab.db")


def test_env_then_overrides() -> None:
    """COLLAB_* variables are parsed by field type; explicit overrides win; None is ignored."""
    env = {"COLLAB_PORT": "9000", "COLLAB_COMMIT_INTERVAL": "0.2", "COLLAB_HOST": "0.0.0.0"}
    config = Config.from_env(env, port=9001, host=None)
    assert (config.port, config.commit_interval, config.host) == (9001, 0.2, "0.0.0.0")


def test_bad_value_names_the_variable() -> None:
    """A value that does not parse raises ValueError naming the variable."""
    with pytest.raises(ValueError, match="COLLAB_ROOM_GRACE"):
        Config.from_env({"COLLAB_ROOM_GRACE": "soon"})


def test_database_url() -> None:
    """A bare path means SQLite through aiosqlite; URLs pass through."""
    assert database_url("x.db") == "sqlite+aiosqlite:///x.db"
    assert database_url("postgresql+asyncpg://h/db") == "postgresql+asyncpg://h/db"
