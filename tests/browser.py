"""Headless Chromium for the browser tests, driven by Playwright (Python).

Debian's Chromium (``/usr/bin/chromium``, or ``COLLAB_CHROMIUM``); Playwright never
downloads a browser here. Without Playwright or Chromium the tests skip, unless
``COLLAB_REQUIRE_BROWSER=1`` (CI sets it), which makes that a failure.

``tiptap_bundle`` builds tests/js/tiptap-page.mjs (a Tiptap 3 editor with its
collaboration extensions, over @hocuspocus/provider or y-websocket) with esbuild, once
per test session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import TIMEOUT_FACTOR
from tests.jsclient import JS_DIR, require_node

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = os.environ.get("COLLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("COLLAB_REQUIRE_BROWSER") == "1"
# The flags Chromium needs in a sandboxed, offline container (no GPU, no network but ours).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MS = int(15_000 * TIMEOUT_FACTOR)  # Playwright's waits, in milliseconds


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    missing = _missing()
    if missing is not None:
        if REQUIRED:
            pytest.fail(f"COLLAB_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def tiptap_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/js/tiptap-page.mjs bundled into one script a page can load."""
    require_node()
    esbuild = JS_DIR / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("tests/js/node_modules/.bin/esbuild missing (run: npm ci --prefix tests/js)")
    out = tmp_path_factory.mktemp("tiptap") / "tiptap.js"
    subprocess.run(
        [str(esbuild), "tiptap-page.mjs", "--bundle", "--format=iife", f"--outfile={out}",
         "--log-level=warning"],
        cwd=JS_DIR,
        check=True,
        timeout=120,
    )  # fmt: skip
    return out


async def tiptap_page(browser: Browser, bundle: Path, **options: object) -> Page:
    """A new page (its own context) running one Tiptap editor started with ``options``."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.set_content("<!doctype html><html><body></body></html>")
    await page.add_script_tag(content=await asyncio.to_thread(bundle.read_text))
    await page.evaluate("(options) => window.startEditor(options)", options)
    return page
