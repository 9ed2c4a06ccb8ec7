"""The command line itself: the parser, settings from flags, environment and files, logging."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

from collab.tools.cli import _setup_logging, main
from tests.conftest import TIMEOUT_FACTOR


def test_bad_env_value_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A COLLAB_* variable of the wrong type stops the CLI with exit code 2 and a message."""
    monkeypatch.setenv("COLLAB_PORT", "not-a-port")
    assert main(["db", "upgrade"]) == 2
    assert "COLLAB_PORT" in capsys.readouterr().err


def test_config_file_then_env_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags win over COLLAB_* variables, which win over the TOML file."""
    from collab.tools.cli import _config, _parser

    file = tmp_path / "collab.toml"
    file.write_text('[collab]\nport = 1111\nroom_grace = 3.5\nhost = "10.1.1.1"\n')
    monkeypatch.setenv("COLLAB_PORT", "2222")
    args = _parser().parse_args(["serve", "--config", str(file), "--host", "127.0.0.2"])
    config = _config(args)
    assert (config.port, config.room_grace, config.host) == (2222, 3.5, "127.0.0.2")


def test_unknown_key_in_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the config file is an error, not silently ignored."""
    file = tmp_path / "collab.toml"
    file.write_text("prot = 1\n")
    assert main(["db", "upgrade", "--config", str(file)]) == 2
    assert "prot" in capsys.readouterr().err


def test_json_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    """With --log-format json each log line is one JSON object."""
    _setup_logging("info", "json")
    try:
        logging.getLogger("collab.test").info("connect room=%r", "r1")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        entry = json.loads(line)
        assert entry["message"] == "connect room='r1'" and entry["level"] == "info"
    finally:
        logging.getLogger().handlers.clear()


READERS = [
    ["show", "doc"],
    ["history", "doc"],
    ["export", "doc", "--format", "text"],
    ["dump", "--out", "-"],
    ["backup", "copy.db"],
    ["compact"],
    ["purge"],
    ["token", "revoke", "some-jti"],
]


@pytest.mark.parametrize("command", READERS, ids=[" ".join(c[:2]) for c in READERS])
def test_a_command_never_creates_a_missing_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Every command but serve, db upgrade and load refuses a mistyped --db (exit 2, one
    line naming the absolute path) instead of creating and migrating an empty database."""
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--db", "mistyped.db"]) == 2
    err = capsys.readouterr().err
    assert f"no database at {tmp_path / 'mistyped.db'}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "mistyped.db").exists()


def test_commands_are_quiet_about_migrations_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Alembic lines on stderr unless --log-level debug asks for them."""
    db = str(tmp_path / "new.db")
    assert main(["db", "upgrade", "--db", db]) == 0
    assert main(["history", "nope", "--db", db]) == 1
    assert "alembic" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "shown"), [([], False), (["--log-level", "debug"], True)], ids=["default", "debug"]
)
async def test_db_upgrade_shows_the_migrations_at_log_level_debug_only(
    tmp_path: Path, flags: list[str], shown: bool
) -> None:
    """`collab db upgrade --log-level debug` on a new database prints Alembic's lines about
    the migrations it runs; without the flag it prints none."""
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab", "db", "upgrade", "--db", str(tmp_path / "new.db"),
        *flags, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(done.communicate(), 60 * TIMEOUT_FACTOR)
    assert done.returncode == 0, err
    assert ("alembic.runtime.migration: Running upgrade  -> 0001" in err.decode()) is shown
    assert ("alembic" in err.decode()) is shown


def test_help_says_what_collab_is(capsys: pytest.CaptureFixture[str]) -> None:
    """`collab --help` starts with a whole sentence, not a cut-off docstring line."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "collaborative editing server for Yjs that keeps every edit." in out
    assert "``" not in out
