"""The administration commands: ``collab db upgrade``, ``collab token create``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collab.auth import Access, Verifier
from collab.tools.cli import main


def test_db_upgrade_creates_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``collab db upgrade`` creates the schema at the newest revision."""
    db = tmp_path / "new.db"
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"documents", "updates", "checkpoints", "alembic_version"} <= tables
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize("user", ["", "  "], ids=["empty", "blank"])
def test_token_create_refuses_an_empty_user(capsys: pytest.CaptureFixture[str], user: str) -> None:
    """``collab token create --user ''`` exits 2 with a clear message and prints no token."""
    secret = "cli-secret-0123456789abcdef0123456789"
    argv = ["token", "create", "--auth-secret", secret, "--user", user, "--docs", "*"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "--user must not be empty" in err
    assert out == ""


def test_token_create_prints_a_working_token_last(capsys: pytest.CaptureFixture[str]) -> None:
    """`collab token create` prints a token (last word) that the server accepts."""
    secret = "cli-secret-0123456789abcdef0123456789"
    argv = ["token", "create", "--auth-secret", secret, "--user", "u7", "--name", "Bo"]
    assert main([*argv, "--docs", "team/*", "--read-only", "--expires", "2h"]) == 0
    token = capsys.readouterr().out.split()[-1]
    identity = Verifier(secret).verify(token)
    assert identity.user_id == "u7" and identity.access("team/x") is Access.READ
    assert identity.expires is not None


def test_token_create_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a secret, token creation fails with a clear message."""
    monkeypatch.delenv("COLLAB_AUTH_SECRET", raising=False)
    assert main(["token", "create", "--user", "u", "--docs", "*"]) == 2
    assert "auth-secret" in capsys.readouterr().err
