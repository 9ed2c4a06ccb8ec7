"""What the browser tests share: screenshots of each test."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page


@dataclass
class Shots:
    """Screenshots of a test, numbered in the order taken."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    async def take(self, page: Page, name: str) -> Path:
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path))
        self.taken.append(path)
        extra = os.environ.get("COLLAB_SCREENSHOT_DIR")
        if extra:
            await asyncio.to_thread(_copy, path, Path(extra))
        return path


def _copy(path: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, directory / path.name)


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Shots:
    directory = tmp_path / "screenshots"
    directory.mkdir()
    # One prefix per test, so COLLAB_SCREENSHOT_DIR collects every test's pictures.
    prefix = request.node.name.removeprefix("test_")[:40]
    shots = Shots(directory)
    original = shots.take

    async def take(page: Page, name: str) -> Path:
        return await original(page, f"{prefix}-{name}")

    shots.take = take  # type: ignore[method-assign]
    return shots
