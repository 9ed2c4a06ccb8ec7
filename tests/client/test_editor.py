"""End to end: the browser editor in a real headless Chromium, against a real server.

Driven by Playwright (Python) with Debian's Chromium (``/usr/bin/chromium``, or
``COLLAB_CHROMIUM``); Playwright never downloads a browser here. Without Playwright or
Chromium these tests are skipped, unless ``COLLAB_REQUIRE_BROWSER=1`` (CI sets it), which
makes that a failure. Every test takes screenshots into its ``tmp_path`` (and into
``COLLAB_SCREENSHOT_DIR`` when set, to look at them).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
from sqlalchemy import text

from collab.auth import Access, mint
from collab.config import Config
from collab.http.state import HUB
from collab.tools.cli import main as cli
from tests.browser import MS
from tests.client.conftest import Shots
from tests.conftest import Server, editor, eventually, start_server

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page


@asynccontextmanager
async def person(
    browser: Browser, base: str, name: str | None, color: str = "#2563eb"
) -> AsyncIterator[Page]:
    """A browser context of its own (its own IndexedDB and localStorage): one person.

    With ``name``, the person has visited before (their name is remembered); without, the
    page asks for it.
    """
    context = await browser.new_context(viewport={"width": 1280, "height": 760}, base_url=base)
    context.set_default_timeout(MS)
    if name is not None:
        user = {"name": name, "color": color}
        await context.add_init_script(
            f"localStorage.setItem('collab:user', JSON.stringify({user!r}))"
        )
    errors: list[str] = []
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert errors == [], errors
    finally:
        await context.close()


def editor_path(room: str) -> str:
    return "/d/" + quote(room, safe="/")


async def text_of(page: Page) -> str:
    """The page's Y.Text "content", as its Yjs document holds it."""
    await page.wait_for_function("() => window.collab !== undefined")  # the editor started
    text: str = await page.evaluate("() => window.collab.doc.getText('content').toString()")
    return text


async def state_of(page: Page) -> str:
    state = await page.get_attribute("[data-testid=status]", "data-state")
    return state or ""


async def wait_state(page: Page, state: str) -> None:
    await page.wait_for_selector(f"[data-testid=status][data-state={state}]")


async def type_at(page: Page, where: str, text: str) -> None:
    """Click into the editor, go to the start or end of the document, and type."""
    await page.click(".cm-content")
    await page.keyboard.press("Control+Home" if where == "start" else "Control+End")
    await page.keyboard.type(text, delay=5)


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    await eventually(condition, timeout, what)


async def server_text(session: aiohttp.ClientSession, server: Server, room: str) -> str:
    """What a fresh Yjs client (pycrdt) gets from the server for ``room``."""
    async with editor(session, server.url(quote(room, safe="/"))) as e:
        return str(e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the tests ----------------------------------------------------------------------------


async def test_two_people_co_edit_and_see_each_other(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """Two browsers type into one document at once, converge, and see each other's cursor."""
    room = "team/notes/été"
    async with person(browser, server.http, None) as ada:
        await ada.goto(editor_path(room))
        await ada.wait_for_selector("dialog[open] [data-testid=dialog-input]")
        await shots.take(ada, "name-prompt")
        await ada.fill("[data-testid=dialog-input]", "Ada Lovelace")
        await ada.click("[data-testid=dialog-submit]")
        await wait_state(ada, "saved")
        await type_at(ada, "end", "# Launch plan\n\n")
        async with person(browser, server.http, "Bob", "#db2777") as bob:
            await bob.goto(editor_path(room))
            await wait_state(bob, "saved")
            await until(
                lambda: _same(text_of(bob), "# Launch plan\n\n"), "Bob to get Ada's heading"
            )
            # At the same time: Ada at the top, Bob at the bottom.
            await asyncio.gather(
                type_at(ada, "start", "Status: draft\n"),
                type_at(bob, "end", "- Bob: write the announcement"),
            )

            async def converged() -> bool:
                a, b = await text_of(ada), await text_of(bob)
                return a == b and "Status: draft\n" in a and "- Bob: write the announcement" in a

            await until(converged, "both editors to hold both edits")
            await ada.wait_for_selector(".cm-ySelectionInfo:has-text('Bob')")
            await bob.wait_for_selector(".cm-ySelectionInfo:has-text('Ada Lovelace')")
            for page in (ada, bob):
                names = await page.locator("[data-testid=person]").evaluate_all(
                    "people => people.map(p => p.dataset.name)"
                )
                assert sorted(names) == ["Ada Lovelace", "Bob"]
                await wait_state(page, "saved")
            assert await ada.inner_text("[data-testid=status]") == "All changes saved"
            await shots.take(ada, "ada-sees-bob")
            await shots.take(bob, "bob-sees-ada")
            final = await text_of(ada)
            assert await server_text(session, server, room) == final
    # History records who wrote what: the name each person gave.
    hub = server.app[HUB]
    await hub.store.flush()
    async with hub.store.engine.connect() as conn:
        authors = {
            row[0]
            for row in await conn.execute(
                text(
                    "SELECT DISTINCT author FROM updates JOIN documents ON id = doc_id "
                    "WHERE name = :name"
                ),
                {"name": room},
            )
        }
    assert authors == {"Ada Lovelace", "Bob"}


async def _same(text: Awaitable[str], expected: str) -> bool:
    return await text == expected


async def _same_text(page: Page, expected: str) -> bool:
    return await text_of(page) == expected


async def test_reload_keeps_the_text_and_the_server_has_it(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """After a reload the text is there; a new browser with empty storage gets it too."""
    room = "reload me"
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path(room))
        await wait_state(ada, "saved")
        await type_at(ada, "end", "Kept across reloads.")
        await wait_state(ada, "saved")
        await ada.reload()
        await wait_state(ada, "saved")
        assert await text_of(ada) == "Kept across reloads."
        assert await ada.inner_text(".cm-content") == "Kept across reloads."
        await shots.take(ada, "after-reload")
    async with person(browser, server.http, "Cy") as cy:
        await cy.goto(editor_path(room))
        await wait_state(cy, "saved")
        assert await text_of(cy) == "Kept across reloads."
    assert await server_text(session, server, room) == "Kept across reloads."


async def test_server_restart_keeps_text_and_the_page_reconnects(
    config: Config, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """The page rides out a restart: it says so, keeps edits made meanwhile, then saves them."""
    room = "restart/notes"
    port = free_port()
    async with start_server(config, port=port) as first:
        async with person(browser, first.http, "Ada") as ada:
            await ada.goto(editor_path(room))
            await wait_state(ada, "saved")
            await type_at(ada, "end", "Written before the restart.")
            await wait_state(ada, "saved")
            await first.test_server.close()  # the server goes away (1001 to every client)
            await wait_state(ada, "reconnecting")
            await type_at(ada, "end", " And while it was down.")
            await ada.wait_for_selector("[data-testid=status][data-pending=true]")
            await shots.take(ada, "server-down")
            assert "edits kept" in await ada.inner_text("[data-testid=status]")
            async with start_server(config, port=port) as second:
                await wait_state(ada, "saved")  # reconnected on its own, and uploaded
                await shots.take(ada, "reconnected")
                expected = "Written before the restart. And while it was down."
                assert await text_of(ada) == expected
                assert await server_text(session, second, room) == expected


async def test_document_list_search_create_and_presence(
    server: Server, browser: Browser, shots: Shots
) -> None:
    """The list starts empty, creates a document from the search box, then shows who is in it."""
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto("/")
        await ada.wait_for_selector("text=No documents yet")
        await shots.take(ada, "empty-list")
        await ada.fill("[data-testid=search]", "team/roadmap 2027")
        await ada.wait_for_selector("[data-testid=create-row]")
        await ada.press("[data-testid=search]", "Enter")
        await ada.wait_for_url("**/d/team/roadmap%202027")
        await wait_state(ada, "saved")
        assert await ada.inner_text("[data-testid=room-name]") == "team/roadmap 2027"
        await type_at(ada, "end", "# Roadmap\n\nQ1: ship the editor.")
        await wait_state(ada, "saved")
        for other in ["team/retro", "personal/ideas"]:
            async with editor_in(browser, server.http, other, "Bot"):
                pass
        async with person(browser, server.http, "Bob", "#db2777") as bob:
            await bob.goto("/")
            row = bob.locator("[data-testid=doc-row][data-name='team/roadmap 2027']")
            await row.wait_for()
            await row.locator("text=Ada").wait_for()  # Ada is in it right now
            assert await bob.locator("[data-testid=doc-row]").count() == 3
            await shots.take(bob, "list")
            await bob.fill("[data-testid=search]", "team/")
            await until(
                lambda: _count(bob, "[data-testid=doc-row]", 2), "the search to narrow the list"
            )
            await shots.take(bob, "search")
            await row.click()
            await wait_state(bob, "saved")
            assert await text_of(bob) == "# Roadmap\n\nQ1: ship the editor."


async def _count(page: Page, selector: str, expected: int) -> bool:
    return await page.locator(selector).count() == expected


@asynccontextmanager
async def editor_in(browser: Browser, base: str, room: str, name: str) -> AsyncIterator[Page]:
    """Someone opens ``room`` and types a line, then leaves."""
    async with person(browser, base, name) as page:
        await page.goto(editor_path(room))
        await wait_state(page, "saved")
        await type_at(page, "end", f"{room} by {name}")
        await wait_state(page, "saved")
        yield page


async def test_a_room_named_like_a_history_page(
    server: Server, browser: Browser, shots: Shots
) -> None:
    """`/d/notes%2Fhistory` edits room "notes/history"; `/d/notes/history` is history of notes."""
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto("/d/notes%2Fhistory")
        await wait_state(ada, "saved")
        assert await ada.inner_text("[data-testid=room-name]") == "notes/history"
        await type_at(ada, "end", "A room whose name ends in /history.")
        await wait_state(ada, "saved")
        assert await ada.get_attribute("[data-testid=history-link]", "href") == (
            "/d/notes/history/history"
        )
        await ada.goto("/")
        row = ada.locator("[data-testid=doc-row][data-name='notes/history']")
        assert await row.get_attribute("href") == "/d/notes%2Fhistory"
        await ada.goto("/d/notes/history")
        await ada.wait_for_selector("[data-testid=problem] >> text=No history yet")
        await shots.take(ada, "no-history")


async def test_invalid_room_name_is_a_friendly_error(
    server: Server, browser: Browser, shots: Shots
) -> None:
    """A name the server refuses (4400) shows what is wrong, and the page stops retrying."""
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path("x" * 600))
        await ada.wait_for_selector("[data-testid=problem]")
        assert "cannot be used" in await ada.inner_text("[data-testid=problem]")
        assert await state_of(ada) == "refused"
        await shots.take(ada, "invalid-name")


async def test_deleted_document_is_a_friendly_error(
    server: Server, browser: Browser, shots: Shots
) -> None:
    """An open editor whose document gets deleted (4404) says so and stops retrying."""
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path("doomed"))
        await ada.wait_for_selector(".cm-content")
        # The editor draws before its socket has joined: the document exists from the join.
        await wait_state(ada, "saved")
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{server.http}/api/docs/doomed") as response:
                assert response.status == 200
        await ada.wait_for_selector("[data-testid=problem]")
        assert "was deleted" in await ada.inner_text("[data-testid=problem]")
        assert await state_of(ada) == "refused"
        await shots.take(ada, "deleted")


async def test_permission_states_with_auth(config: Config, browser: Browser, shots: Shots) -> None:
    """With auth on: no token asks to sign in (4401), a token without access says so (4403)."""
    secret = "s3cret-for-tests-only-0123456789abcdef"
    team = mint(secret, user_id="ann", name="Ann", docs=[("team/*", Access.WRITE)])
    async with start_server(config.replace(auth_secret=secret)) as server:
        async with person(browser, server.http, "Ann") as ann:
            await ann.goto(editor_path("team/plan"))
            await ann.wait_for_selector("[data-testid=problem] >> text=Sign-in needed")
            await shots.take(ann, "sign-in-needed")
            await ann.goto(editor_path("team/plan") + f"?token={team}")
            await wait_state(ann, "saved")
            assert "token" not in ann.url  # taken out of the address bar
            await type_at(ann, "end", "Team only.")
            await wait_state(ann, "saved")
            await ann.goto(editor_path("private/diary"))  # the token is remembered
            await ann.wait_for_selector("[data-testid=problem] >> text=No access")
            await shots.take(ann, "no-access")
            await ann.goto("/")
            await ann.locator("[data-testid=doc-row][data-name='team/plan']").wait_for()
            assert await ann.locator("[data-testid=doc-row]").count() == 1

            # A reader sees every change live but cannot type; the page says so.
            reader = mint(secret, user_id="rita", name="Rita", docs=[("team/*", Access.READ)])
            async with person(browser, server.http, None) as rita:
                await rita.goto(editor_path("team/plan") + f"?token={reader}")
                await wait_state(rita, "saved")  # no name prompt: the token carries one
                await rita.wait_for_selector("[data-testid=read-only]")
                assert await rita.inner_text("[data-testid=me]") == "R\nRita"
                await rita.click(".cm-content")
                await rita.keyboard.type("vandalism")
                assert await text_of(rita) == "Team only."
                await ann.goto(editor_path("team/plan"))
                await wait_state(ann, "saved")
                await type_at(ann, "end", " Readers see this live.")
                await until(
                    lambda: _same_text(rita, "Team only. Readers see this live."),
                    "the reader to see the writer's edit",
                )
                await rita.wait_for_selector(".cm-ySelectionInfo:has-text('Ann')")
                await shots.take(rita, "read-only")
                await rita.goto("/")
                await rita.locator("[data-testid=doc-row] >> text=read only").wait_for()


async def test_history_shows_an_older_version_and_restore_reaches_the_open_editor(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """History scrubs back to Ada's draft, names it, and restores it into the live editors."""
    room = "history/plan"
    draft = "# Plan\n\nFirst draft."
    async with (
        person(browser, server.http, "Ada") as ada,
        person(browser, server.http, "Bob", "#db2777") as bob,
    ):
        await ada.goto(editor_path(room))
        await wait_state(ada, "saved")
        await type_at(ada, "end", draft)
        await wait_state(ada, "saved")
        await bob.goto(editor_path(room))
        await wait_state(bob, "saved")
        await type_at(bob, "end", "\nBob's rewrite replaces the plan.")
        await bob.keyboard.press("Control+Home")
        await bob.keyboard.press("End")
        for _ in range(4):
            await bob.keyboard.press("Backspace")
        await bob.keyboard.type("Roadmap")
        await wait_state(bob, "saved")
        current = "# Roadmap\n\nFirst draft.\nBob's rewrite replaces the plan."
        await until(lambda: _same(text_of(ada), current), "Ada to see Bob's changes")

        history = await ada.context.new_page()
        await history.goto(editor_path(room) + "/history")
        entries = history.locator("[data-testid=entry]")
        await until(lambda: _count(history, "[data-testid=entry]", 2), "two timeline entries")
        assert "Bob" in await entries.nth(0).inner_text()  # newest first
        assert "Ada" in await entries.nth(1).inner_text()
        await history.wait_for_selector("[data-testid=version-text] ins")
        await shots.take(history, "newest")

        # Scrub to the very first version, then pick Ada's entry: her whole draft.
        await history.locator("[data-testid=slider]").fill("1")
        await history.wait_for_selector("[data-testid=version-text][data-seq='1']")
        assert await history.inner_text("[data-testid=seq]") != ""
        await entries.nth(1).click()
        text = history.locator("[data-testid=version-text]")
        await until(lambda: _same(text.inner_text(), draft), "the draft to show")
        assert await history.locator("[data-testid=version-text] del").count() == 0
        assert "Ada" in await history.inner_text("[data-testid=version-line]")
        draft_seq = int(await text.get_attribute("data-seq") or 0)
        await shots.take(history, "draft")

        await history.click("[data-testid=name-version]")
        await history.fill("[data-testid=dialog-input]", "first draft")
        await history.click("[data-testid=dialog-submit]")
        await history.wait_for_selector("[data-testid=label] >> text=first draft")
        assert await history.locator(".mark").count() == 1

        await history.click("[data-testid=restore]")
        await history.wait_for_selector("[data-testid=toast] >> text=Restored version")
        await shots.take(history, "restored")
        for page in (ada, bob):  # both open editors get the restore, live
            await until(partial(_same_text, page, draft), "the editors to show the draft")
        await wait_state(bob, "saved")
        await shots.take(bob, "bob-after-restore")
        # History is not rewritten: the restore is a new, newest version.
        assert "(current)" in await history.inner_text("[data-testid=version-line]")
        newest = int(await text.get_attribute("data-seq") or 0)
        assert newest > draft_seq
        assert await server_text(session, server, room) == draft


async def test_unreachable_server_keeps_edits_in_the_browser(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """Edits made while the server cannot be reached survive a reload and reach it later."""
    from playwright.async_api import WebSocketRoute

    room = "offline/notes"
    reachable = False

    async def route(ws: WebSocketRoute) -> None:
        if reachable:
            ws.connect_to_server()
        else:
            await ws.close(code=1011, reason="unreachable")

    async with person(browser, server.http, "Ada") as ada:
        await ada.route_web_socket(re.compile(r"/ws/"), route)
        await ada.goto(editor_path(room))
        await wait_state(ada, "unreachable")
        await type_at(ada, "end", "Written with no server.")
        await ada.wait_for_selector("[data-testid=banner] >> text=Can't reach the server")
        await shots.take(ada, "unreachable")
        await ada.reload()  # y-indexeddb kept the edit in this browser
        await until(lambda: _same_text(ada, "Written with no server."), "the edit to survive")
        reachable = True
        await wait_state(ada, "saved")
        assert await ada.locator("[data-testid=banner]").is_hidden()
        assert await server_text(session, server, room) == "Written with no server."


async def _replace_lin(config: Config, tmp_path: Path) -> None:
    """The operator's move: ``other``'s history loaded over ``lin``."""
    dumped = tmp_path / "other.jsonl"
    assert (
        await asyncio.to_thread(cli, ["dump", "other", "--db", config.db, "--out", str(dumped)])
        == 0
    )
    assert await asyncio.to_thread(
        cli, ["load", str(dumped), "--db", config.db, "--rename", "other=lin", "--replace"]
    ) == 0  # fmt: skip


async def _downloaded(page: Page) -> str:
    async with page.expect_download() as waiting:
        await page.click("[data-testid=offline-copy]")
    download = await waiting.value
    return await asyncio.to_thread(Path(await download.path()).read_text)


async def test_a_replaced_document_offers_the_offline_copy(
    config: Config, browser: Browser, session: aiohttp.ClientSession, shots: Shots, tmp_path: Path
) -> None:
    """A browser kept a document that was then replaced (``load --replace``).

    Opened again, the page sees from the lineage it kept beside its IndexedDB copy that
    the copy is of another history: it uploads nothing, offers exactly that copy as a
    download, and opens the current document. A page left open while the document was
    replaced is refused by the server (4410) on reconnecting, and offers its copy too.
    """
    port = free_port()
    old = "old text from the stale browser."
    async with start_server(config, port=port) as first:
        async with editor(session, first.url("other")) as other:
            other.text += "replacement text."
            await eventually(lambda: first.app[HUB].rooms["other"].seq == 1, what="stored")
        async with person(browser, first.http, "Ada") as ada:
            await ada.goto(editor_path("lin"))
            await wait_state(ada, "saved")
            await type_at(ada, "end", old)
            await wait_state(ada, "saved")
            await first.test_server.close()
            await wait_state(ada, "reconnecting")
            await _replace_lin(config, tmp_path)
            async with start_server(config, port=port) as second:
                # Left open: its reconnection uploads the old history, which is refused.
                await ada.wait_for_selector("[data-testid=problem] >> text=was replaced")
                assert await state_of(ada) == "refused"
                await shots.take(ada, "replaced-while-open")
                assert old in await _downloaded(ada)
                assert await server_text(session, second, "lin") == "replacement text."
                await ada.click("[data-testid=open-current]")
                await wait_state(ada, "saved")
                assert await text_of(ada) == "replacement text."
    # A closed tab: the copy waits in IndexedDB while the document is replaced again.
    async with start_server(config, port=port) as third:
        async with person(browser, third.http, "Bo") as bo:
            await bo.goto(editor_path("other"))
            await wait_state(bo, "saved")
            await type_at(bo, "end", " Bo was here.")
            await wait_state(bo, "saved")
            await bo.goto("/")  # the tab moves on; its copy of "other" stays in IndexedDB
            await third.test_server.close()
            async with start_server(config, port=port) as fourth:
                async with editor(session, fourth.url("fresh")) as fresh:
                    fresh.text += "a brand new history."
                    await eventually(
                        lambda: fourth.app[HUB].rooms["fresh"].seq == 1, what="stored"
                    )
            dumped = tmp_path / "fresh.jsonl"
            assert (
                await asyncio.to_thread(
                    cli, ["dump", "fresh", "--db", config.db, "--out", str(dumped)]
                )
                == 0
            )
            assert await asyncio.to_thread(
                cli, ["load", str(dumped), "--db", config.db, "--rename", "fresh=other",
                      "--replace"],
            ) == 0  # fmt: skip
            async with start_server(config, port=port) as fifth:
                await bo.goto(editor_path("other"))
                await bo.wait_for_selector("[data-testid=problem] >> text=was replaced")
                await shots.take(bo, "replaced-on-open")
                assert await _downloaded(bo) == "replacement text. Bo was here."
                await bo.click("[data-testid=open-current]")
                await wait_state(bo, "saved")
                assert await text_of(bo) == "a brand new history."
                assert await server_text(session, fifth, "other") == "a brand new history."


async def test_a_reset_document_offers_the_offline_copy(
    config: Config, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """A document reset (``POST .../reset``) while a tab has it open: the server closes
    the tab with 4410 and the page offers its copy, then opens the new history. A tab
    closed before the reset learns it from the lineage when it opens the document again,
    and uploads nothing."""
    async with start_server(config) as server:

        async def reset(room: str, content: str) -> None:
            url = f"{server.http}/api/docs/{room}/reset"
            async with session.post(url, json={"content": content}) as response:
                assert response.status == 200, await response.text()

        async with person(browser, server.http, "Ada") as ada:
            await ada.goto(editor_path("lin"))
            await wait_state(ada, "saved")
            await type_at(ada, "end", "before the reset.")
            await wait_state(ada, "saved")
            await reset("lin", "a fresh start.")
            await ada.wait_for_selector("[data-testid=problem] >> text=was replaced")
            assert await state_of(ada) == "refused"
            await shots.take(ada, "reset-while-open")
            assert "before the reset." in await _downloaded(ada)
            await ada.click("[data-testid=open-current]")
            await wait_state(ada, "saved")
            assert await text_of(ada) == "a fresh start."
        async with person(browser, server.http, "Bo") as bo:
            await bo.goto(editor_path("notes"))
            await wait_state(bo, "saved")
            await type_at(bo, "end", "Bo's notes.")
            await wait_state(bo, "saved")
            await bo.goto("/")  # the tab moves on; its copy of "notes" stays in IndexedDB
            await reset("notes", "notes, started over.")
            await bo.goto(editor_path("notes"))
            await bo.wait_for_selector("[data-testid=problem] >> text=was replaced")
            assert await _downloaded(bo) == "Bo's notes."
            await bo.click("[data-testid=open-current]")
            await wait_state(bo, "saved")
            assert await text_of(bo) == "notes, started over."
        assert await server_text(session, server, "notes") == "notes, started over."
