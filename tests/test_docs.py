"""The README documents every setting and command (datasette's docs-vs-code test)."""

from __future__ import annotations

import argparse
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


@pytest.mark.parametrize(
    "command",
    [
        "collab serve",
        "collab db upgrade",
        "collab backup",
        "collab dump",
        "collab load",
        "collab token create",
        "collab token revoke",
        "collab purge",
    ],
)
def test_every_command_is_documented(command: str) -> None:
    """Each CLI command appears in the README's command table."""
    assert f"`{command}`" in README
