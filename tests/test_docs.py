"""The README documents every setting and command (datasette's docs-vs-code test)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from collab.config import Config
from collab.tools.cli import _parser

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in fields(Config)])
def test_every_setting_is_documented(name: str) -> None:
    """Each Config field appears in the README with its environment variable."""
    assert f"`{name}`" in README
    assert f"`COLLAB_{name.upper()}`" in README


def test_every_flag_is_documented() -> None:
    """Each `collab serve` flag appears in the README."""
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    for action in serve._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}`" in README, flag


def _commands(parser: argparse.ArgumentParser, prefix: str = "collab") -> Iterator[str]:
    """Every command the parser runs, nested ones by their full name (``collab db upgrade``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = list(_commands(sub, f"{prefix} {name}"))
                yield from nested or [f"{prefix} {name}"]


COMMANDS = sorted(_commands(_parser()))
# A row of the README's command table: | `collab db upgrade` | or | `collab history ROOM` |
_TABLE_ROW = re.compile(r"^\| `(collab(?: [a-z][a-z-]*)+)[ `]", re.MULTILINE)


def test_the_parser_has_nested_commands() -> None:
    """The walk reaches nested subcommands, not only the top level."""
    assert {"collab serve", "collab db upgrade", "collab token create"} <= set(COMMANDS)
    assert "collab db" not in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    """Each CLI command the parser knows appears in the README's command table."""
    assert command in _TABLE_ROW.findall(README)


def test_the_readme_documents_no_command_the_cli_lacks() -> None:
    """Each command in the README's table is one the parser knows."""
    assert set(_TABLE_ROW.findall(README)) <= set(COMMANDS)
