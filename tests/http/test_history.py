"""The history API on a real server: real WebSocket clients write, real HTTP reads.

Updates go in as y-websocket clients send them (one per keystroke of the real trace, or
from pycrdt editors); history is read over HTTP and checked against the trace itself.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Map, Text

from collab.auth import Access, mint
from collab.config import Config
from collab.history.replay import format_ms
from collab.sync.protocol import encode_update
from tests.conftest import ROOT, Server, editor, eventually, raw_client, start_server
from tests.trace import trace

SECRET = "history-tests-secret-of-thirty-two-bytes"


@pytest.fixture
def config(config: Config) -> Config:
    # Trace slices arrive as fast as a socket carries them: no per-connection rate limit.
    return config.replace(max_updates_per_second=0)


async def get(
    session: aiohttp.ClientSession, server: Server, path: str, **params: Any
) -> tuple[int, Any]:
    async with session.get(server.http + path, params=params) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        if response.content_type == "text/plain":
            return response.status, await response.text()
        return response.status, await response.read()


async def post(
    session: aiohttp.ClientSession, server: Server, path: str, body: Any, **kwargs: Any
) -> tuple[int, Any]:
    async with session.post(server.http + path, json=body, **kwargs) as response:
        return response.status, await response.json()


async def last_seq(session: aiohttp.ClientSession, server: Server, room: str) -> int:
    status, info = await get(session, server, f"/api/docs/{room}/info")
    return int(info["seq"]) if status == 200 else -1


async def send(
    session: aiohttp.ClientSession,
    server: Server,
    room: str,
    updates: list[bytes],
    user: str | None = None,
) -> None:
    """Send ``updates`` over one connection, one message each, and wait until stored."""
    start = max(0, await last_seq(session, server, room))
    async with raw_client(session, server.url(room, f"user={user}" if user else "")) as client:
        await client.handshake()
        for update in updates:
            await client.ws.send_bytes(encode_update(update))

        async def stored() -> bool:
            return await last_seq(session, server, room) >= start + len(updates)

        await eventually(stored, 10, "updates stored")


@pytest.fixture
async def paper(session: aiohttp.ClientSession, server: Server) -> AsyncIterator[Any]:
    """Room "paper": the first 2,500 keystrokes of the trace, one update each."""
    sample = trace(2500)
    await send(session, server, "paper", sample.updates, user="kleppmann")
    yield sample


async def test_versions_match_the_trace(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Every sampled version, across checkpoints, is exactly the trace's text at that seq."""
    for seq in [0, 1, 2, 999, 1000, 1001, 1234, 2000, 2499, 2500]:
        status, version = await get(session, server, f"/api/docs/paper/versions/{seq}")
        assert status == 200
        assert version["seq"] == seq
        assert version["content"].get(ROOT, "") == paper.texts[seq]
        status, text = await get(
            session, server, f"/api/docs/paper/versions/{seq}", format="text", root=ROOT
        )
        assert (status, text) == (200, paper.texts[seq])


async def test_version_as_yjs_update(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """format=yjs returns the version as one Yjs update any client can apply."""
    async with session.get(server.http + "/api/docs/paper/versions/1800?format=yjs") as response:
        assert response.status == 200
        assert response.headers["X-Collab-Seq"] == "1800"
        body = await response.read()
    doc: Doc[Any] = Doc()
    doc.apply_update(body)
    assert str(doc.get(ROOT, type=Text)) == paper.texts[1800]


async def test_timeline_pages_cover_every_update(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Paging the raw timeline newest first visits every update once, with its size."""
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"raw": 1, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        status, page = await get(session, server, "/api/docs/paper/history", **params)
        assert status == 200
        for entry in page["entries"]:
            seen.append(entry["seq"])
            assert entry["authors"] == ["kleppmann"]
            assert entry["inserted"] + entry["deleted"] == 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(range(2500, 0, -1))


async def test_grouped_timeline(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Grouped, one author typing without pause is a few entries whose sizes add up."""
    status, page = await get(session, server, "/api/docs/paper/history", gap=3600)
    assert status == 200
    entries = page["entries"]
    assert entries[0]["seq"] == 2500 and entries[-1]["first_seq"] == 1
    assert sum(e["updates"] for e in entries) == 2500
    assert sum(e["inserted"] - e["deleted"] for e in entries) == len(paper.texts[2500])
    assert page["next"] is None


async def test_diff_and_blame_between_authors(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """Diff and blame name who inserted and who deleted each span."""
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    text += "The quick fox"
    await send(session, server, "pair", updates[:], user="alice")
    updates.clear()
    del text[4:10]  # "quick "
    text.insert(4, "lazy ")
    await send(session, server, "pair", updates[:], user="bob")
    updates.clear()
    text += " jumps"
    await send(session, server, "pair", updates[:], user="carol")

    status, diff = await get(session, server, "/api/docs/pair/diff", **{"from": 1})
    assert status == 200
    spans = [(s["op"], s["text"], s.get("author")) for s in diff["spans"]]
    assert spans == [
        ("equal", "The ", None),
        ("delete", "quick ", "bob"),
        ("insert", "lazy ", "bob"),
        ("equal", "fox", None),
        ("insert", " jumps", "carol"),
    ]
    assert (diff["inserted"], diff["deleted"], diff["authors"]) == (11, 6, ["bob", "carol"])

    status, blame = await get(session, server, "/api/docs/pair/blame")
    assert status == 200
    assert [(s["text"], s["author"]) for s in blame["spans"]] == [
        ("The ", "alice"),
        ("lazy ", "bob"),
        ("fox", "alice"),
        (" jumps", "carol"),
    ]
    status, old = await get(session, server, "/api/docs/pair/blame", seq=1)
    assert [(s["text"], s["author"]) for s in old["spans"]] == [("The quick fox", "alice")]


async def test_diff_of_one_author_between_distant_versions(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Between two far-apart versions by one author, the diff's kept and inserted text is
    the newer version and its kept and deleted text the older one."""
    status, diff = await get(session, server, "/api/docs/paper/diff", **{"from": 300, "to": 2400})
    assert status == 200
    new = "".join(s["text"] for s in diff["spans"] if s["op"] != "delete")
    old = "".join(s["text"] for s in diff["spans"] if s["op"] != "insert")
    assert (old, new) == (paper.texts[300], paper.texts[2400])
    assert diff["authors"] == ["kleppmann"]


async def test_authors_are_recorded_per_connection(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A named client is its name; an anonymous one its connection, one per socket."""
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    for who in ["dana", None, None]:
        text += "x"
        await send(session, server, "who", updates[-1:], user=who)
    status, page = await get(session, server, "/api/docs/who/history", raw=1)
    authors = [e["authors"][0] for e in page["entries"]]
    assert authors[2] == "dana"
    assert authors[0].startswith("connection:") and authors[1].startswith("connection:")
    assert authors[0] != authors[1]


async def test_restore_then_undo(session: aiohttp.ClientSession, server: Server) -> None:
    """A restore reaches connected editors as a new change by its author, and restoring
    the version before it undoes it."""
    async with editor(session, server.url("doc", "user=alice")) as alice:
        alice.text += "first draft"
        await eventually(lambda: _seq_at_least(session, server, "doc", 1), what="stored")
        draft = await last_seq(session, server, "doc")
        del alice.text[0:5]
        alice.text.insert(0, "second")
        alice.doc.get("meta", type=Map)["status"] = "final"
        await eventually(lambda: _seq_at_least(session, server, "doc", draft + 3))
        latest = await last_seq(session, server, "doc")

        status, result = await post(
            session, server, "/api/docs/doc/restore", {"seq": draft, "user": "bob"}
        )
        assert status == 200
        assert result == {"restored": draft, "seq": latest + 1, "changed": True}
        await eventually(lambda: str(alice) == "first draft", what="restore relayed")
        status, page = await get(session, server, "/api/docs/doc/history", raw=1, limit=1)
        assert page["entries"][0]["authors"] == ["bob"]
        status, version = await get(session, server, "/api/docs/doc/versions/latest")
        assert version["content"] == {
            "content": "first draft",
            "meta": None,
        }  # emptied: no type left

        status, undo = await post(session, server, "/api/docs/doc/restore", {"seq": latest})
        assert (status, undo["changed"]) == (200, True)
        await eventually(lambda: str(alice) == "second draft", what="undo relayed")
        assert alice.doc.get("meta", type=Map).to_py() == {"status": "final"}

        status, again = await post(session, server, "/api/docs/doc/restore", {"seq": latest})
        assert again == {"restored": latest, "seq": undo["seq"], "changed": False}


async def _seq_at_least(
    session: aiohttp.ClientSession, server: Server, room: str, seq: int
) -> bool:
    return await last_seq(session, server, room) >= seq


async def test_restore_of_an_unloaded_room(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Restoring a room nobody has open loads it, stores the change, and unloads it."""
    status, result = await post(session, server, "/api/docs/paper/restore", {"seq": 10})
    assert status == 200 and result["seq"] == 2501
    status, text = await get(session, server, "/api/docs/paper/versions/2501", format="text")
    assert text == paper.texts[10]


async def test_versions_by_time(session: aiohttp.ClientSession, server: Server) -> None:
    """?at= picks the last version stored at or before a time."""
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    times = []
    for word in ["one", " two", " three"]:
        text += word
        await send(session, server, "clock", updates[-1:])
        status, page = await get(session, server, "/api/docs/clock/history", raw=1, limit=1)
        times.append(page["entries"][0]["end"])
        stored_ms = _ms(times[-1])
        # The next update must get a later millisecond than this one.
        await eventually(lambda: time.time() * 1000 > stored_ms + 2, what="clock to move on")
    for seq, at in enumerate(times, start=1):
        status, version = await get(session, server, "/api/docs/clock/versions", at=at)
        assert (status, version["seq"]) == (200, seq)
    status, version = await get(session, server, "/api/docs/clock/versions", at="2001-01-01")
    assert (status, version["seq"], version["content"]) == (200, 0, {})
    status, version = await get(session, server, "/api/docs/clock/versions", at=str(_ms(times[1])))
    assert version["content"] == {"content": "one two"}


def _ms(iso: str) -> int:
    from collab.history.replay import parse_time

    return parse_time(iso)


async def test_named_versions(session: aiohttp.ClientSession, server: Server, paper: Any) -> None:
    """Versions can be labelled, listed (newest first), shown in the timeline, deleted."""
    status, review = await post(
        session, server, "/api/docs/paper/named-versions", {"name": "sent to review", "seq": 1200}
    )
    assert status == 201
    assert (review["seq"], review["name"]) == (1200, "sent to review")
    status, latest = await post(session, server, "/api/docs/paper/named-versions", {"name": "v2"})
    assert (status, latest["seq"]) == (201, 2500)
    status, listed = await get(session, server, "/api/docs/paper/named-versions")
    assert [v["name"] for v in listed["named_versions"]] == ["v2", "sent to review"]
    status, page = await get(session, server, "/api/docs/paper/history", gap=3600, limit=200)
    named = {e["seq"]: e["named"] for e in page["entries"] if e["named"]}
    assert named == {1200: ["sent to review"], 2500: ["v2"]}

    status, dup = await post(session, server, "/api/docs/paper/named-versions", {"name": "v2"})
    assert status == 409 and "v2" in dup["error"]
    async with session.delete(
        f"{server.http}/api/docs/paper/named-versions/{review['id']}"
    ) as response:
        assert response.status == 204
    status, listed = await get(session, server, "/api/docs/paper/named-versions")
    assert [v["name"] for v in listed["named_versions"]] == ["v2"]


async def test_playback_and_samples(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Playback gives a base state and the updates after it; applied in order they give
    every version. Samples give evenly spread versions' text in one request."""
    status, playback = await get(
        session, server, "/api/docs/paper/playback", **{"from": 1000, "to": 1300, "limit": 200}
    )
    assert status == 200
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(playback["base"]))
    assert str(doc.get(ROOT, type=Text)) == paper.texts[1000]
    for update in playback["updates"]:
        doc.apply_update(base64.b64decode(update["update"]))
        assert str(doc.get(ROOT, type=Text)) == paper.texts[update["seq"]]
    assert playback["updates"][-1]["seq"] == 1200 and playback["next"] == "1200"

    status, samples = await get(
        session, server, "/api/docs/paper/samples", **{"from": 0, "to": 2500, "count": 11}
    )
    assert status == 200
    got = [(v["seq"], v["content"]) for v in samples["versions"]]
    assert got == [(seq, paper.texts[seq] or None) for seq in range(0, 2501, 250)]


async def test_info_measures_storage(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """info reports the versions and bytes stored against the document's size."""
    status, info = await get(session, server, "/api/docs/paper/info")
    assert status == 200
    storage = info["storage"]
    assert (info["seq"], storage["rows"]) == (2500, 2500)
    assert storage["checkpoints"] >= 2
    assert storage["total_bytes"] > storage["document_bytes"] > len(paper.texts[2500])


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/docs/nope/history", {}, 404, "no document named 'nope'"),
        ("/api/docs/nope/versions/1", {}, 404, "no document"),
        ("/api/docs/paper/versions/2501", {}, 404, "no version 2501"),
        ("/api/docs/paper/versions/-1", {}, 400, "bad seq"),
        ("/api/docs/paper/versions/abc", {}, 400, "bad seq"),
        ("/api/docs/paper/versions", {"at": "noon"}, 400, "bad time"),
        ("/api/docs/paper/versions/5", {"at": "2020-01-01"}, 400, "not both"),
        ("/api/docs/paper/versions/5", {"format": "pdf"}, 400, "bad format"),
        ("/api/docs/paper/versions/5", {"format": "text", "root": "x"}, 404, "no root"),
        ("/api/docs/paper/history", {"limit": 0}, 400, "bad limit"),
        ("/api/docs/paper/history", {"cursor": "x"}, 400, "bad cursor"),
        ("/api/docs/paper/history", {"gap": "soon"}, 400, "bad gap"),
        ("/api/docs/paper/history", {"raw": "maybe"}, 400, "bad raw"),
        ("/api/docs/paper/diff", {}, 400, "from="),
        ("/api/docs/paper/diff", {"from": 9, "to": 3}, 400, "must not be after"),
        ("/api/docs/paper/diff", {"from": 1, "to": 9999}, 404, "no version 9999"),
        ("/api/docs/paper/blame", {"root": "missing"}, 404, "no root"),
        ("/api/docs/paper/playback", {"limit": 10**6}, 400, "bad limit"),
        ("/api/docs/paper/samples", {"count": 0}, 400, "bad count"),
    ],
)
async def test_bad_requests_get_json_errors(
    session: aiohttp.ClientSession,
    server: Server,
    paper: Any,
    path: str,
    params: dict[str, Any],
    status: int,
    message: str,
) -> None:
    """Each bad request gets its 4xx status and a JSON error that says what is wrong."""
    got, body = await get(session, server, path, **params)
    assert got == status
    assert message in body["error"]


async def test_bad_writes_get_json_errors(
    session: aiohttp.ClientSession, server: Server, paper: Any
) -> None:
    """Malformed restore and label requests are refused with a clear 4xx JSON error."""
    url = server.http + "/api/docs/paper"
    cases: list[tuple[str, Any, int, str]] = [
        ("/restore", {}, 400, "give the version"),
        ("/restore", {"seq": 99999}, 404, "no version"),
        ("/restore", {"seq": [1]}, 400, "bad seq"),
        ("/named-versions", {"seq": 3}, 400, "give the version a name"),
        ("/named-versions", {"name": " "}, 400, "1 to 255 characters"),
        ("/named-versions", {"name": "x", "at": "soon"}, 400, "bad time"),
    ]
    for path, body, status, message in cases:
        async with session.post(url + path, json=body) as response:
            assert response.status == status, path
            assert message in (await response.json())["error"]
    async with session.post(url + "/restore", data=b"{not json") as response:
        assert (response.status, (await response.json())["error"]) == (400, "the body is not JSON")
    async with session.delete(url + "/named-versions/77") as response:
        assert response.status == 404


async def test_auth_applies_to_history(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """With auth on, history needs a token: none is 401, another document's 403, a
    read-only token reads but cannot restore."""
    config = Config(
        db=str(tmp_path / "auth.db"), auth_secret=SECRET, room_grace=0.2, commit_interval=0.01
    )
    writer = mint(SECRET, user_id="u1", name="Ada", docs=[("team/*", Access.WRITE)])
    reader = mint(SECRET, user_id="u2", name=None, docs=[("team/*", Access.READ)])
    async with start_server(config) as server:
        source: Doc[Any] = Doc()
        updates: list[bytes] = []
        source.observe(lambda event: updates.append(event.update))
        source.get(ROOT, type=Text).insert(0, "secret plans")
        async with raw_client(session, server.url("team/plan", f"token={writer}")) as client:
            await client.handshake()
            await client.ws.send_bytes(encode_update(updates[0]))

            async def stored() -> bool:
                status, _ = await get(session, server, "/api/docs/team/plan/info", token=writer)
                return (
                    status == 200
                    and (await get(session, server, "/api/docs/team/plan/info", token=writer))[1][
                        "seq"
                    ]
                    == 1
                )

            await eventually(stored, what="stored")
        status, body = await get(session, server, "/api/docs/team/plan/history")
        assert status == 401 and "error" in body
        other = mint(SECRET, user_id="u3", name=None, docs=[("other/*", Access.WRITE)])
        status, body = await get(session, server, "/api/docs/team/plan/history", token=other)
        assert status == 403
        status, page = await get(session, server, "/api/docs/team/plan/history", token=reader)
        assert status == 200 and page["entries"][0]["authors"] == ["Ada"]
        status, body = await post(
            session, server, "/api/docs/team/plan/restore", {"seq": 0}, params={"token": reader}
        )
        assert (status, body["error"]) == (403, "read-only")
        status, body = await post(
            session, server, "/api/docs/team/plan/restore", {"seq": 0}, params={"token": writer}
        )
        assert status == 200 and body["changed"]
        status, page = await get(
            session, server, "/api/docs/team/plan/history", token=reader, raw=1
        )
        assert page["entries"][0]["authors"] == ["Ada"]
        assert page["entries"][0]["deleted"] == len("secret plans")


async def test_times_are_iso(session: aiohttp.ClientSession, server: Server, paper: Any) -> None:
    """Times in responses are ISO-8601 UTC with milliseconds."""
    status, version = await get(session, server, "/api/docs/paper/versions/5")
    assert version["time"].endswith("Z") and version["time"] == format_ms(_ms(version["time"]))
    await asyncio.sleep(0)
