"""The browser editor's HTTP side: pages, static assets and ``GET /api/docs``.

Real server, real SQLite, real Yjs clients making the edits the list reports.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from collab.auth import Access, mint
from collab.config import Config
from collab.http import browser
from collab.http.state import HUB
from collab.sync.protocol import AwarenessEntry, encode_awareness
from tests.conftest import Server, editor, eventually, raw_client, start_server

STATIC = browser.STATIC


def _room_url(server: Server, room: str) -> str:
    return server.url(quote(room, safe="/"))


async def _docs(session: aiohttp.ClientSession, server: Server, **params: str) -> Any:
    async with session.get(f"{server.http}/api/docs", params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


# -- pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/d/notes", "/d/team/notes/%C3%A9t%C3%A9", "/d/team/notes/history", "/d/a%2Fhistory"],
)
async def test_every_page_is_the_client_shell(
    server: Server, session: aiohttp.ClientSession, path: str
) -> None:
    """The list, any editor and any history path serve the same index.html, never cached stale."""
    async with session.get(server.http + path) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-cache"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        host = server.http.removeprefix("http://")
        assert f"connect-src 'self' ws://{host} wss://{host};" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        body = await response.text()
    assert body == (STATIC / "index.html").read_text()
    assert re.search(r'src="/static/app\.js\?v=[0-9a-f]{12}"', body)


async def test_a_strange_host_header_stays_out_of_the_policy(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """The Host header names the WebSocket origin in the CSP only when it is a plain host."""
    headers = {"Host": "evil.example; script-src *"}
    async with session.get(server.http + "/", headers=headers) as response:
        csp = response.headers["Content-Security-Policy"]
    assert "connect-src 'self';" in csp
    assert "evil" not in csp


async def test_head_of_a_page(server: Server, session: aiohttp.ClientSession) -> None:
    """HEAD works on pages (monitoring and link checkers use it)."""
    async with session.head(server.http + "/d/x") as response:
        assert response.status == 200


async def test_an_unbuilt_client_says_how_to_build_it(tmp_path: Path) -> None:
    """Without a bundle the pages answer 503 with the command that builds one."""
    app = web.Application()
    browser.setup(app, static=tmp_path)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/d/anything")
        assert response.status == 503
        assert "npm run build" in await response.text()


# -- static assets -----------------------------------------------------------------------


def _referenced(name: str) -> str:
    match = re.search(
        rf"/static/{re.escape(name)}\?v=([0-9a-f]+)", (STATIC / "index.html").read_text()
    )
    assert match, f"index.html does not reference {name}"
    return match.group(1)


async def test_entry_files_are_cached_for_a_year_under_their_hash(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """app.js?v=<its hash> is immutable; the same file without the hash must be revalidated."""
    version = _referenced("app.js")
    async with session.get(f"{server.http}/static/app.js?v={version}") as response:
        assert response.status == 200
        assert response.content_type == "text/javascript"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert await response.read() == (STATIC / "app.js").read_bytes()
    async with session.get(f"{server.http}/static/app.js?v=stale") as response:
        assert response.headers["Cache-Control"] == "no-cache"
    async with session.get(f"{server.http}/static/app.css") as response:
        assert response.status == 200
        assert response.content_type == "text/css"
        assert response.headers["Cache-Control"] == "no-cache"


async def test_chunks_are_immutable_and_gzipped(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Hashed chunks are cached for a year, and sent gzipped to clients that accept it."""
    chunk = max((STATIC / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    raw = chunk.read_bytes()
    url = f"{server.http}/static/chunks/{chunk.name}"
    async with session.get(
        url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        body = await response.read()
    assert gzip.decompress(body) == raw
    assert len(body) < len(raw) / 2
    async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
        assert "Content-Encoding" not in response.headers
        assert await response.read() == raw


async def test_etag_revalidation(server: Server, session: aiohttp.ClientSession) -> None:
    """A client holding the current version gets 304 Not Modified, with no body."""
    async with session.get(server.http + "/static/app.css") as response:
        etag = response.headers["ETag"]
    async with session.get(
        server.http + "/static/app.css", headers={"If-None-Match": etag}
    ) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag
        assert await response.read() == b""
    async with session.get(server.http + "/", headers={"If-None-Match": "W/" + etag}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "path", ["nope.js", "chunks", "..%2Fweb.py", "%2E%2E/web.py", "chunks/..%2F..%2Fweb.py"]
)
async def test_only_bundle_files_are_served(
    server: Server, session: aiohttp.ClientSession, path: str
) -> None:
    """Unknown names, directories and paths out of the static directory are 404."""
    url = server.http + "/static/" + path
    async with session.get(URL(url, encoded=True)) as response:
        assert response.status == 404


_LONG = "a" * 5000


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.js%00.png",
        "/static/%00",
        "/static/index.html%00",
        "/static/chunks/%00x.js",
        "/static/a%01b.js",
        "/static/a%5Cb.js",
        "/static/%5C..%5Cweb.py",
        "/static/" + _LONG,
        "/static/" + _LONG + ".js",
        "/static/" + "a/" * 1500 + "b.js",
        "/static/" + "a" * 256 + ".js",
        "/static/..",
        "/static/../web.py",
        "/static/%2E%2E/%2E%2E/web.py",
        "/static/chunks%2F..%2F..%2Fweb.py",
        "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/./app.js",
        "/static/app.js/",
        "/static/%zz",
        "/static/%",
        "/static/%C3%28.js",
        "/static/%ED%A0%80.js",
    ],
)
async def test_odd_static_paths_are_404(
    server: Server, session: aiohttp.ClientSession, path: str
) -> None:
    """NUL or control characters, backslashes, over-long names, ``..``, encoded slashes,
    empty parts and broken percent-encoding under /static/ are 404, never a 500."""
    async with session.get(URL(server.http + path, encoded=True)) as response:
        assert response.status == 404, path[:80]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/d/%00", 404),
        ("/d/a%00b", 404),
        ("/d/a%00b/history", 404),
        ("/d/%1Bx", 404),
        ("/d/" + _LONG, 404),
        ("/d/" + _LONG + "/history", 404),
        ("/d/" + "a/" * 1500 + "b", 404),
        # Any other string is a document name (not a file path): the page is served and
        # the client asks the server about that name.
        ("/d/..", 200),
        ("/d/../../etc/passwd", 200),
        ("/d/a%2F..%2Fb", 200),
        ("/d/%zz", 200),
        ("/d/%", 200),
        ("/d/%C3%28", 200),
        ("/d/%ED%A0%80", 200),
        ("/d/x/history", 200),
    ],
)
async def test_odd_page_paths_are_never_500(
    server: Server, session: aiohttp.ClientSession, path: str, status: int
) -> None:
    """A page whose name no document can have (NUL, control characters, longer than
    ``max_room_name``) is 404 with the client shell (which explains it); any other name,
    however odd, is the editor page."""
    async with session.get(URL(server.http + path, encoded=True)) as response:
        assert response.status == status, path[:80]
        assert response.content_type == "text/html"
        assert await response.text() == (STATIC / "index.html").read_text()


def test_index_references_only_files_that_exist() -> None:
    """Every file index.html and the entry module load is in the committed bundle."""
    html = (STATIC / "index.html").read_text()
    for name in re.findall(r"/static/([\w./-]+)", html):
        assert (STATIC / name).is_file(), name
    app = (STATIC / "app.js").read_text()
    for name in re.findall(r'"\./(chunks/[\w.-]+\.js)"', app):
        assert (STATIC / name).is_file(), name
    assert (STATIC / "licenses.txt").read_text().count("yjs") >= 1


# -- the document list -------------------------------------------------------------------


async def test_list_reports_real_edits(server: Server, session: aiohttp.ClientSession) -> None:
    """Each document comes with its last edit time, update count, size and who is online."""
    async with editor(session, _room_url(server, "alpha")) as alpha:
        for i in range(3):
            alpha.text += f"line {i}\n"
        await eventually(lambda: server.app[HUB].rooms["alpha"].seq == 3)
    async with editor(session, _room_url(server, "team/été")) as beta:
        beta.text += "bonjour"
        async with raw_client(session, _room_url(server, "team/été")) as watcher:
            await watcher.handshake()
            state = {"user": {"name": "Ada", "color": "#2563eb"}}
            await watcher.ws.send_bytes(encode_awareness([AwarenessEntry(42, 1, state)]))
            hub = server.app[HUB]
            await eventually(lambda: 42 in hub.rooms["team/été"].awareness)
            await eventually(lambda: hub.rooms["team/été"].seq == 1)
            await hub.store.flush()  # the list reads committed rows
            body = await _docs(session, server)
    docs = body["docs"]
    assert [d["name"] for d in docs] == ["team/été", "alpha"]  # most recently edited first
    beta_row, alpha_row = docs
    assert beta_row["online"] == 2
    assert beta_row["people"] == [{"name": "Ada", "color": "#2563eb"}]
    assert beta_row["updates"] == 1
    assert beta_row["size"] > len("bonjour")
    assert alpha_row["updates"] == 3
    assert alpha_row["online"] == 0 and alpha_row["people"] == []
    assert alpha_row["updated"] < beta_row["updated"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(alpha_row["updated"]))
    assert body["next"] is None


async def test_size_after_a_checkpoint(config: Config, session: aiohttp.ClientSession) -> None:
    """Size counts the newest checkpoint plus the updates after it, as a load reads them."""
    async with start_server(config.replace(checkpoint_updates=4)) as server:
        async with editor(session, _room_url(server, "doc")) as e:
            for i in range(6):
                e.text += "x" * 10
            hub = server.app[HUB]
            await eventually(lambda: hub.rooms["doc"].seq == 6)
        await eventually(lambda: "doc" not in hub.rooms, timeout=5)
        (row,) = (await _docs(session, server))["docs"]
        assert row["updates"] == 6
        loaded = await hub.store.load("doc")
        expected = len(loaded.checkpoint or b"") + sum(map(len, loaded.updates))
        assert row["size"] == expected


async def test_search_and_pages(server: Server, session: aiohttp.ClientSession) -> None:
    """`q` matches a substring (its % and _ taken literally); cursors walk every page once."""
    names = ["notes/monday", "notes/tuesday", "100%_done", "1000 done", "plans"]
    for name in names:
        async with editor(session, _room_url(server, name)) as e:
            e.text += name
            hub = server.app[HUB]
            await eventually(lambda n=name: hub.rooms[n].seq == 1)  # type: ignore[misc]
    got = await _docs(session, server, q="NOTES/")
    assert sorted(d["name"] for d in got["docs"]) == ["notes/monday", "notes/tuesday"]
    got = await _docs(session, server, q="%_")
    assert [d["name"] for d in got["docs"]] == ["100%_done"]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await _docs(session, server, **params)
        seen += [d["name"] for d in page["docs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(names))
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be between 1 and 200"),
        ("limit=201", "limit must be between 1 and 200"),
        ("limit=many", "limit must be an integer"),
        ("cursor=yesterday", "invalid cursor"),
    ],
)
async def test_bad_list_requests(
    server: Server, session: aiohttp.ClientSession, query: str, message: str
) -> None:
    """Malformed parameters get a 400 with a JSON error saying what is wrong."""
    async with session.get(f"{server.http}/api/docs?{query}") as response:
        assert response.status == 400
        assert await response.json() == {"error": message}


async def test_list_with_auth_shows_only_what_the_token_may_open(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """With auth on, the list needs a token and hides documents it gives no access to."""
    secret = "s3cret-for-tests-only-0123456789abcdef"
    writer = mint(secret, user_id="root", docs=[("*", Access.WRITE)])
    async with start_server(config.replace(auth_secret=secret)) as server:
        for name in ["team/a", "team/b", "private/c"]:
            async with editor(session, _room_url(server, name) + f"?token={writer}") as e:
                e.text += name
                hub = server.app[HUB]
                await eventually(lambda n=name: hub.rooms[n].seq == 1)  # type: ignore[misc]
        async with session.get(f"{server.http}/api/docs") as response:
            assert response.status == 401
            assert "error" in await response.json()
        reader = mint(secret, user_id="ann", docs=[("team/*", Access.READ)])
        headers = {"Authorization": f"Bearer {reader}"}
        async with session.get(f"{server.http}/api/docs?limit=1", headers=headers) as response:
            first = await response.json()
        async with session.get(
            f"{server.http}/api/docs?limit=1&cursor={first['next']}", headers=headers
        ) as response:
            second = await response.json()
        assert [d["name"] for d in first["docs"] + second["docs"]] == ["team/b", "team/a"]
        assert second["next"] is None
        assert {d["access"] for d in first["docs"] + second["docs"]} == {"read"}
