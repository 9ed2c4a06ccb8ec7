"""The history page and lineages, in Chromium: the retired histories of a document listed,
a reset's kept history read and restored from (docs/lineage.md, "Reset")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp

from tests.client.conftest import Shots
from tests.client.test_editor import editor_path, person, type_at, until, wait_state
from tests.conftest import Server, editor

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Request


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _content(session: aiohttp.ClientSession, api: str) -> str:
    async with session.get(api + "/content?format=text") as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def _has(page: Page, selector: str, text: str) -> bool:
    return text in await page.inner_text(selector)


async def _version_text(page: Page) -> str:
    """The text of the version shown: the page's view without what it shows as deleted."""
    text: str = await page.eval_on_selector(
        "[data-testid=version-text]",
        "el => Array.from(el.childNodes, n => n.nodeName === 'DEL' ? '' : n.textContent).join('')",
    )
    return text


async def test_a_reset_history_is_listed_read_and_restored_from(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """After a reset the history page lists the retired history (reason reset), reads it
    with ``?lineage=`` on every request, restores its newest version into the current
    document, and switches back to the current history."""
    room = "plans/launch"
    api = f"{server.http}/api/docs/{quote(room, safe='/')}"
    old = "Old plan: ship in May."
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path(room))
        await wait_state(ada, "saved")
        await type_at(ada, "end", old)
        await wait_state(ada, "saved")
        await ada.goto("/")  # the tab moves on before the reset
        await _post(session, api + "/reset", {"content": "A fresh start."})
        lineages = await _get(session, api + "/lineage")
        current = lineages["lineage"]
        (retired,) = lineages["retired_lineages"]
        assert (retired["reason"], retired["readable"]) == ("reset", True)

        reads: list[str] = []

        def seen(request: Request) -> None:
            if "/api/docs/" in request.url:
                reads.append(request.method + " " + request.url)

        ada.on("request", seen)
        await ada.goto(editor_path(room) + "/history")
        text = ada.locator("[data-testid=version-text]")
        await until(lambda: _has(ada, "[data-testid=version-text]", "A fresh start."), "current")
        assert await ada.inner_text("[data-testid=current-lineage]") == current[:8]
        option = ada.locator("[data-testid=retired-lineage]")
        assert await option.count() == 1
        assert await option.get_attribute("value") == retired["lineage"]
        assert await option.get_attribute("data-reason") == "reset"
        assert await option.is_enabled()
        assert "Reset on" in await option.inner_text()
        assert await ada.locator("[data-testid=lineage-banner]").count() == 0

        reads.clear()
        await ada.select_option("[data-testid=lineage-select]", retired["lineage"])
        banner = ada.locator("[data-testid=lineage-banner]")
        await banner.wait_for()
        assert "a history from before the reset on" in await banner.inner_text()
        await until(lambda: _has(ada, "[data-testid=version-text]", old), "the old text")
        old_seq = await text.get_attribute("data-seq")
        assert old_seq is not None
        assert await ada.inner_text("[data-testid=seq]") == f"Version {old_seq} of {old_seq}"
        assert parse_qs(urlsplit(ada.url).query)["lineage"] == [retired["lineage"]]
        assert await ada.locator("[data-testid=name-version]").is_hidden()
        assert reads  # every read of the page is of the retired history
        for read in reads:
            assert f"lineage={retired['lineage']}" in read, read
        await shots.take(ada, "retired-history")

        await ada.click("[data-testid=restore]")
        await ada.wait_for_selector("[data-testid=toast] >> text=from before the reset")
        assert await _content(session, api) == old
        assert (await _get(session, api + "/lineage"))["lineage"] == current  # no new history
        await shots.take(ada, "restored")

        await ada.click("[data-testid=lineage-back]")
        await banner.wait_for(state="detached")
        await until(lambda: _has(ada, "[data-testid=version-line]", "(current)"), "current")
        newest = (await _get(session, api + "/info"))["seq"]
        await ada.wait_for_selector(f"[data-testid=version-text][data-seq='{newest}']")
        assert await _version_text(ada) == old  # the restore is the current history's newest
        assert "lineage" not in parse_qs(urlsplit(ada.url).query)
        assert await ada.input_value("[data-testid=lineage-select]") == ""
        await shots.take(ada, "current-history")


async def test_an_empty_reset_opens_the_kept_history(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """A reset without content leaves the current history without a version: the history
    page opens on the kept one, and offers no way to the empty current one."""
    room = "blank"
    api = f"{server.http}/api/docs/{room}"

    async def written() -> bool:
        async with session.get(api + "/info") as response:
            return response.status == 200 and (await response.json())["seq"] > 0

    async with editor(session, server.url(room)) as pen:
        pen.text += "Written before the reset."
        await until(written, "the text to be stored")
    await _post(session, api + "/reset", {})
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path(room) + "/history")
        banner = ada.locator("[data-testid=lineage-banner]")
        await banner.wait_for()
        assert "before the reset on" in await banner.inner_text()
        await until(lambda: _has(ada, "[data-testid=version-text]", "Written before"), "old")
        assert await ada.locator("[data-testid=lineage-back]").is_disabled()
        current = ada.locator("[data-testid=lineage-select] option[value='']")
        assert await current.is_disabled()
        await shots.take(ada, "empty-reset")
