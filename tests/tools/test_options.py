"""What the commands share: durations and the database file a --db setting names."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.config import Config
from collab.tools.options import database_exists, database_path, seconds


@pytest.mark.parametrize(
    ("text", "expected"), [("3600", 3600.0), ("90m", 5400.0), ("12h", 43200.0), ("1.5d", 129600.0)]
)
def test_durations_read_with_or_without_a_unit(text: str, expected: float) -> None:
    """A bare number is seconds; s, m, h, d and w scale it."""
    assert seconds(text) == expected


def test_a_duration_with_an_unknown_unit_is_refused() -> None:
    """A unit the commands do not know is a ValueError naming the text."""
    with pytest.raises(ValueError, match="bad duration '3y'"):
        seconds("3y")


def test_a_missing_sqlite_file_does_not_exist(tmp_path: Path) -> None:
    """A mistyped SQLite path is reported missing, at its absolute path."""
    config = Config(db=str(tmp_path / "nope.db"))
    assert database_path(config) == str(tmp_path / "nope.db")
    assert not database_exists(config)


def test_another_engine_is_left_to_the_command() -> None:
    """A PostgreSQL URL has no file, so it is never reported missing."""
    config = Config(db="postgresql+asyncpg://127.0.0.1/collab")
    assert database_path(config) is None
    assert database_exists(config)
