"""A rolling restart behind a load balancer: Debian's nginx, with the site from ``contrib/``,
round-robin and without sticky sessions, in front of two nodes on PostgreSQL and Redis.
Real y-websocket clients (``tests/js``) type through it while each node in turn is stopped
and started again; every edit must end up in every client and in the database exactly once.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests import process
from tests.conftest import TIMEOUT_FACTOR, eventually
from tests.jsclient import RECONNECT_BACKOFF, JsClient, require_node
from tests.nginx import site, tool
from tests.process import free_port
from tests.services import postgres_database, require_redis

CLIENTS = 3
TOKEN = re.compile(r"<(\d+):(\d+)>")


async def _type(client: JsClient, index: int, stop: asyncio.Event, typed: list[str]) -> None:
    """Insert this client's numbered tokens at the start of the text until ``stop``."""
    n = 0
    while not stop.is_set():
        token = f"<{index}:{n}>"
        await client.insert(0, token)  # local: it works whether or not it is connected
        typed.append(token)
        n += 1
        await asyncio.sleep(0.05)


def _tokens(text: str) -> Counter[str]:
    return Counter(f"<{a}:{b}>" for a, b in TOKEN.findall(text))


def _offline(client: JsClient) -> list[float]:
    """How long each of the client's disconnections lasted, from its status events."""
    waits, down = [], None
    for event in client.events:
        if event["event"] != "status":
            continue
        if event["status"] == "disconnected" and down is None:
            down = event["_at"]
        elif event["status"] == "connected" and down is not None:
            waits.append(event["_at"] - down)
            down = None
    return waits


async def _node(db: str, log: Path, redis: str, port: int) -> process.ServerProcess:
    return await process.start(
        db, log, "--redis", redis, "--commit-interval", "0.02", "--room-grace", "2", port=port
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_rolling_restart_behind_nginx_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """Each node in turn is stopped (SIGTERM, or kill -9) and started again while clients
    type through nginx: afterwards every client and the database hold every edit exactly
    once, no client went without a node for longer than its reconnect back-off (plus one
    connection), and the clients typed on throughout."""
    nginx = tool("nginx", "/usr/sbin/nginx")
    require_node()
    redis = await require_redis()
    monkeypatch.setenv("NODE_TLS_REJECT_UNAUTHORIZED", "0")  # the test's own certificate
    ports = [free_port(), free_port()]
    https, http = free_port(), free_port()
    async with postgres_database() as db:
        nodes = [await _node(db, tmp_path / f"node{i}.log", redis, p) for i, p in enumerate(ports)]
        proxy = await asyncio.create_subprocess_exec(
            nginx, "-c", str(site(tmp_path, ports, https, http))
        )
        clients: list[JsClient] = []
        try:
            base = f"wss://127.0.0.1:{https}/ws"
            for i in range(CLIENTS):
                clients.append(await JsClient.start(base, "rolling", f"c{i}"))
            for client in clients:
                await eventually(client.synced, timeout=20, what="clients synced")
            stop = asyncio.Event()
            typed: list[list[str]] = [[] for _ in clients]
            typing = [
                asyncio.create_task(_type(c, i, stop, typed[i])) for i, c in enumerate(clients)
            ]
            for i, port in enumerate(ports):
                await asyncio.sleep(0.5)
                nodes[i].signal(signum)
                expected = 0 if signum == signal.SIGTERM else -signal.SIGKILL
                assert await nodes[i].wait(30) == expected
                await asyncio.sleep(0.5)  # clients of the stopped node move to the other
                nodes[i] = await _node(db, tmp_path / f"node{i}-again.log", redis, port)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*typing)
            every = Counter(token for tokens in typed for token in tokens)
            assert all(len(tokens) > 10 for tokens in typed), "the clients did not get to type"

            async def converged() -> bool:
                texts = [await c.text() for c in clients]
                return all(_tokens(t) == every for t in texts)

            try:
                await eventually(converged, timeout=30, what="every edit in every client, once")
            except AssertionError:
                # Say what differs: missing or doubled edits, per client, and its status.
                report = []
                for client in clients:
                    state = await client.state()
                    seen = _tokens(str(state["text"]))
                    missing, doubled = every - seen, seen - every
                    report.append(
                        f"{state['status']} synced={state['synced']} "
                        f"missing={sorted(missing)[:5]} extra={sorted(doubled)[:5]}"
                    )
                raise AssertionError("not converged:\n" + "\n".join(report)) from None
            # No client was without a node for longer than its reconnect back-off (and the
            # margin of one connection through nginx and TLS).
            waits = [w for c in clients for w in _offline(c)]
            assert waits and max(waits) < RECONNECT_BACKOFF + 0.5, waits
            print(f"longest time without a node: {max(waits):.2f} s of {len(waits)} outages")
            # The database: a fresh reader through nginx, after the commit window.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as s:

                async def stored() -> bool:
                    url = f"https://127.0.0.1:{https}/api/docs/rolling/content"
                    async with s.get(url) as response:
                        return response.status == 200 and _tokens(await response.text()) == every

                await eventually(stored, timeout=10 * TIMEOUT_FACTOR, what="stored once")
        finally:
            for client in clients:
                await client.quit()
            proxy.terminate()
            await asyncio.wait_for(proxy.wait(), 10 * TIMEOUT_FACTOR)
            for node in nodes:
                if node.process.returncode is None:
                    node.signal(signal.SIGTERM)
                    await node.wait(30)
