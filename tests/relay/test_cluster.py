"""Several collab nodes sharing PostgreSQL and Redis, as separate real processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pycrdt import Doc, Text

from collab.sync.protocol import (
    AwarenessEntry,
    SyncStep1,
    decode,
    encode_awareness,
    encode_sync_step2,
    encode_update,
)
from tests import process
from tests.conftest import ROOT, TIMEOUT_FACTOR, editor, eventually, raw_client
from tests.jsclient import JsClient, require_node
from tests.services import RedisProcess, postgres_database, require_redis


@asynccontextmanager
async def nodes(
    tmp_path: Path, count: int, redis_url: str | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, list[process.ServerProcess]]]:
    """Start ``count`` nodes on one fresh PostgreSQL database and a Redis (``env``:
    settings without a flag, ``COLLAB_*``)."""
    redis_url = redis_url or await require_redis()
    async with postgres_database() as db:
        started: list[process.ServerProcess] = []
        try:
            for i in range(count):
                started.append(
                    await process.start(
                        db,
                        tmp_path / f"node{i}.log",
                        "--redis",
                        redis_url,
                        "--commit-interval",
                        "0.02",
                        "--room-grace",
                        "2",
                        env=env,
                    )
                )
            yield db, started
        finally:
            for node in started:
                if node.process.returncode is None:
                    node.signal(signal.SIGTERM)
            for node in started:
                if node.process.returncode is None:
                    try:
                        await node.wait(20)
                    except TimeoutError:
                        node.signal(signal.SIGKILL)  # fail, but leave no stray node behind
                        await node.wait()
                        tail = node.log.read_text(errors="replace")[-4000:]
                        raise AssertionError(f"{node.log} did not stop on SIGTERM:\n{tail}")


def room() -> str:
    return "cluster/" + uuid.uuid4().hex[:10]


async def _rows(db: str, name: str) -> list[tuple[int, bytes]]:
    conn = await asyncpg.connect(db.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        records = await conn.fetch(
            "SELECT u.seq, u.data FROM updates u JOIN documents d ON d.id = u.doc_id "
            "WHERE d.name = $1 ORDER BY u.seq",
            name,
        )
        return [(r["seq"], bytes(r["data"])) for r in records]
    finally:
        await conn.close()


async def test_editors_on_two_nodes_converge(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Two editors connected to different nodes see each other's edits."""
    name = room()
    async with nodes(tmp_path, 2) as (_, (one, two)):
        async with editor(session, one.url(name)) as ann, editor(session, two.url(name)) as bob:
            ann.text += "from one;"
            await eventually(lambda: str(bob) == "from one;")
            bob.text += "from two"
            await eventually(lambda: str(ann) == "from one;from two")


async def test_js_clients_on_two_nodes_converge(tmp_path: Path) -> None:
    """The real JavaScript client converges across nodes too."""
    require_node()
    name = room()
    async with nodes(tmp_path, 2) as (_, (one, two)):
        ann = await JsClient.start(one.base, name, "ann")
        bob = await JsClient.start(two.base, name, "bob")
        try:
            await eventually(ann.synced)
            await eventually(bob.synced)
            await asyncio.gather(*(ann.insert(0, "a") for _ in range(10)))
            await asyncio.gather(*(bob.insert(0, "b") for _ in range(10)))

            async def same() -> bool:
                a, b = await ann.text(), await bob.text()
                return a == b and len(a) == 20

            await eventually(same, timeout=10, what="convergence across nodes")
        finally:
            await ann.quit()
            await bob.quit()


async def test_awareness_crosses_nodes_and_is_removed_on_drop(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Awareness announced on one node reaches the other, and so does its removal."""
    name = room()
    async with nodes(tmp_path, 2) as (_, (one, two)):
        async with raw_client(session, two.url(name)) as watcher:
            await watcher.handshake()
            async with raw_client(session, one.url(name)) as ann:
                await ann.handshake()
                announce = encode_awareness([AwarenessEntry(31, 1, {"user": {"name": "ann"}})])
                await ann.ws.send_bytes(announce)
                assert await watcher.recv_bytes() == announce
            removal = decode(await watcher.recv_bytes())
            assert removal == decode(encode_awareness([AwarenessEntry(31, 1, None)]))


async def test_concurrent_writes_on_three_nodes_are_stored_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Editors writing at once on three nodes: every update stored exactly once, no gaps."""
    name = room()
    async with nodes(tmp_path, 3) as (db, servers):
        async with (
            editor(session, servers[0].url(name)) as a,
            editor(session, servers[1].url(name)) as b,
            editor(session, servers[2].url(name)) as c,
        ):

            async def type_into(e: object, ch: str) -> None:
                for _ in range(40):
                    e.text += ch  # type: ignore[attr-defined]
                    await asyncio.sleep(0)

            await asyncio.gather(type_into(a, "a"), type_into(b, "b"), type_into(c, "c"))
            await eventually(lambda: len(str(a)) == len(str(b)) == len(str(c)) == 120, timeout=15)
            assert str(a) == str(b) == str(c)

            async def all_stored() -> bool:
                return len(await _rows(db, name)) >= 120

            await eventually(all_stored, timeout=15, what="all updates committed")
        rows = await _rows(db, name)
        assert [seq for seq, _ in rows] == list(range(1, 121))
        assert len({data for _, data in rows}) == 120  # no update stored twice
        async with editor(session, servers[1].url(name)) as late:
            assert sorted(str(late)) == sorted(str(a))


async def _documents_named(db: str, names: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(db.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        records = await conn.fetch(
            "SELECT name, count(*) AS n FROM documents WHERE name = ANY($1) GROUP BY name",
            names,
        )
        return {r["name"]: r["n"] for r in records}
    finally:
        await conn.close()


async def test_two_nodes_creating_the_same_new_documents_at_once_make_one_each(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Editors join the same new rooms on two nodes at the same moment and type at once:
    neither node waits for the other's document row, each room ends up with one document,
    and every update of both is stored once, numbered without a gap."""
    names = [room() for _ in range(5)]
    async with nodes(tmp_path, 2) as (db, (one, two)), contextlib.AsyncExitStack() as stack:
        clients = await asyncio.gather(
            *(
                stack.enter_async_context(raw_client(session, node.url(name)))
                for name in names
                for node in (one, two)
            )
        )
        await asyncio.gather(*(client.handshake() for client in clients))
        for client in clients:
            doc: Doc[Any] = Doc()
            doc.get("content", type=Text).insert(0, "x")
            await client.ws.send_bytes(encode_update(doc.get_update()))

        async def all_stored() -> bool:
            return all([len(await _rows(db, name)) == 2 for name in names])

        await eventually(all_stored, timeout=15, what="every update committed")
        assert await _documents_named(db, names) == dict.fromkeys(names, 1)
        for name in names:
            assert [seq for seq, _ in await _rows(db, name)] == [1, 2]


async def test_a_killed_node_loses_nothing_relayed_or_committed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """kill -9 of one node: the other keeps serving, clients move over and converge."""
    name = room()
    async with nodes(tmp_path, 2) as (_, (one, two)):
        async with editor(session, two.url(name)) as bob:
            async with raw_client(session, two.url(name)) as watcher:
                await watcher.handshake()
                doc: Doc[Any] = Doc()
                text = doc.get(ROOT, type=Text)
                sent: list[bytes] = []
                doc.observe(lambda event: sent.append(event.update))
                async with raw_client(session, one.url(name)) as ann:
                    await ann.handshake()
                    text += "before the crash;"
                    await ann.ws.send_bytes(encode_update(sent[-1]))
                    await eventually(lambda: str(bob) == "before the crash;")
                    announce = encode_awareness([AwarenessEntry(55, 1, {"user": {"name": "a"}})])
                    await ann.ws.send_bytes(announce)
                    while await watcher.recv_bytes() != announce:  # relayed to node two
                        pass
                    one.signal(signal.SIGKILL)
                    assert await one.wait() == -signal.SIGKILL
                text += "offline edit;"  # made while ann's node was down
                # ann's client reconnects to the surviving node with its document.
                async with editor(session, two.url(name), doc=doc) as again:
                    await eventually(lambda: "offline edit;" in str(bob), timeout=10)
                    bob.text += "after"
                    await eventually(lambda: str(again) == str(bob), timeout=10)

                # The dead node's cursor disappears once its liveness key expires.
                async def removed() -> bool:
                    while True:
                        message = decode(await watcher.recv_bytes(timeout=30))
                        entries = getattr(message, "entries", ())
                        if any(e.client_id == 55 and e.state is None for e in entries):
                            return True

                assert await removed()


async def test_redis_restart_mid_session(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Redis going away: nodes keep serving locally, then catch up when it returns."""
    own_redis = RedisProcess(tmp_path)
    await own_redis.start()
    name = room()
    try:
        async with nodes(tmp_path, 2, own_redis.url) as (_, (one, two)):
            async with (
                editor(session, one.url(name)) as ann,
                editor(session, two.url(name)) as bob,
            ):
                ann.text += "1;"
                await eventually(lambda: str(bob) == "1;")
                await own_redis.stop()
                # Both nodes notice, and keep serving their own members meanwhile.
                await eventually(lambda: _redis_down(session, one), timeout=15)
                await eventually(lambda: _redis_down(session, two), timeout=15)
                ann.text += "ann-during;"
                bob.text += "bob-during;"
                await own_redis.start()
                await eventually(
                    lambda: "bob-during;" in str(ann) and "ann-during;" in str(bob),
                    timeout=30,
                    what="catch-up after Redis returned",
                )
                ann.text += "after"
                await eventually(lambda: str(ann) == str(bob), timeout=10)
    finally:
        await own_redis.stop()


async def _redis_down(session: aiohttp.ClientSession, node: process.ServerProcess) -> bool:
    async with session.get(f"http://127.0.0.1:{node.port}/metrics") as response:
        return "collab_redis_connected 0.0" in await response.text()


@pytest.mark.parametrize("delay", [0.0])
async def test_late_loading_node_gets_storage_and_in_flight(
    tmp_path: Path, session: aiohttp.ClientSession, delay: float
) -> None:
    """A node that opens a room late serves what is stored and what is still in flight."""
    name = room()
    async with nodes(tmp_path, 2) as (_, (one, two)):
        async with editor(session, one.url(name)) as ann:
            for i in range(30):
                ann.text += str(i % 10)
            async with editor(session, two.url(name)) as late:
                await eventually(lambda: str(late) == str(ann), timeout=10)


async def test_stop_ends_however_redis_comes_and_goes(tmp_path: Path) -> None:
    """``Cluster.stop`` ends promptly whatever Redis was doing, even when it lands inside
    a publish: redis-py can swallow that cancellation, which left a node hanging at
    SIGTERM. Run in a process of its own, on asyncio's own loop, where it showed."""
    await require_redis()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent / "cluster_stop.py"),
        "12",
        "1",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(child.communicate(), 120 * TIMEOUT_FACTOR)
    lines = [x for x in output.decode().splitlines() if "redis unavailable" not in x]
    assert child.returncode == 0, "\n".join(lines[-30:])


async def test_a_reset_on_one_node_reaches_the_other_nodes_editors(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """``POST .../reset`` on node one: its editor is closed with 4410 at once, the other
    node's within its poll (4410, then it loads the new history); a stale copy is refused
    on either node, and a client of the new history that switches nodes with offline edits
    merges them."""
    name = room()
    async with nodes(tmp_path, 2, env={"COLLAB_REVOCATION_POLL": "0.2"}) as (db, (one, two)):
        old: Doc[Any] = Doc()
        async with editor(session, one.url(name), old) as ann:
            ann.text += "the old history."

            async def stored() -> bool:
                return bool(await _rows(db, name))

            await eventually(stored, what="the old history stored")
        async with (
            raw_client(session, one.url(name)) as here,
            raw_client(session, two.url(name)) as there,
        ):
            await here.handshake()
            await there.handshake()
            url = f"http://127.0.0.1:{one.port}/api/docs/{name}/reset"
            async with session.post(url, json={"content": "new."}) as response:
                assert response.status == 200, await response.text()
            assert await here.closed_with() == 4410  # at once, on the node that reset
            assert await there.closed_with() == 4410  # within the other node's poll
        for node in (one, two):
            async with raw_client(session, node.url(name)) as stale:
                request = decode(await stale.recv_bytes())
                assert isinstance(request, SyncStep1)
                await stale.ws.send_bytes(encode_sync_step2(old.get_update(request.state_vector)))
                assert await stale.closed_with() == 4410
        current: Doc[Any] = Doc()
        async with editor(session, one.url(name), current) as first:
            assert str(first) == "new."
        current.get(ROOT, type=Text).insert(0, "offline ")  # then it reconnects to node two
        async with editor(session, two.url(name), current):
            async with editor(session, one.url(name)) as reader:
                await eventually(lambda: str(reader) == "offline new.", what="merged")
