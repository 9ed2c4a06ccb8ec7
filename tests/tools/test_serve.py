"""``collab serve``: refusing unsafe settings, the startup line, graceful shutdown on
signals, durability after ``kill -9``, and what a started server has imported."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.config import database_url
from collab.errors import CloseCode
from collab.store.schema import head_revision
from collab.sync.protocol import encode_update
from collab.tools.cli import main
from tests import process
from tests.conftest import ROOT, TIMEOUT_FACTOR, editor, raw_client

ROOT_DIR = Path(__file__).parents[2]


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM updates").fetchone()[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_commits_then_closes_1012_and_exits_0(
    tmp_path: Path, session: aiohttp.ClientSession, signum: signal.Signals
) -> None:
    """On SIGTERM/SIGINT the server commits everything, closes its sockets with 1012 (service
    restart: reconnect, here or elsewhere) and exits 0."""
    db = tmp_path / "collab.db"
    # A long commit window: only the shutdown flush can have stored these updates.
    server = await process.start(db, tmp_path / "log", "--commit-interval", "30")
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    for i in range(20):
        text += str(i)
    async with (
        raw_client(session, server.url("bye")) as writer,
        raw_client(session, server.url("bye")) as watcher,
    ):
        await writer.handshake()
        await watcher.handshake()
        for update in updates:
            await writer.ws.send_bytes(encode_update(update))
        for _ in updates:  # all 20 reached the server: the watcher got them relayed
            await watcher.recv_bytes()
        start = time.monotonic()
        server.signal(signum)
        assert await writer.closed_with(10) == CloseCode.SERVICE_RESTART
        assert await watcher.closed_with(10) == CloseCode.SERVICE_RESTART
        # Closed only once committed: the rows are in the database already.
        assert await asyncio.to_thread(_count, db) == 20
    assert await server.wait() == 0
    assert time.monotonic() - start < 5 * TIMEOUT_FACTOR
    assert await asyncio.to_thread(_count, db) == 20


async def test_kill_9_loses_nothing_older_than_the_window(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """kill -9 commit_interval + 100 ms after the server acknowledged an edit loses none of
    the edits sent before it, and a restarted server serves them all."""
    db = tmp_path / "collab.db"
    commit_interval = 0.05
    bound = commit_interval + 0.1  # the promise: nothing older than this is lost
    server = await process.start(db, tmp_path / "log", "--commit-interval", str(commit_interval))
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    for i in range(200):
        text += str(i % 10)
    async with (
        raw_client(session, server.url("crash")) as writer,
        raw_client(session, server.url("crash")) as watcher,
    ):
        await writer.handshake()
        await watcher.handshake()
        for update in updates:
            await writer.ws.send_bytes(encode_update(update))
        # The server relays an edit once it has it: the watcher's copy of the last one is
        # the acknowledgement the window counts from (y-websocket has no other).
        for _ in updates:
            await watcher.recv_bytes()
        acknowledged = time.monotonic()
        # The bound is the subject here, not a wait for something: sleep exactly that long.
        await asyncio.sleep(acknowledged + bound - time.monotonic())
        server.signal(signal.SIGKILL)
        assert await server.wait() == -signal.SIGKILL
    assert await asyncio.to_thread(_count, db) == 200
    restarted = await process.start(db, tmp_path / "log", port=server.port)
    try:
        async with editor(session, restarted.url("crash")) as late:
            assert str(late) == str(text)
    finally:
        restarted.signal(signal.SIGTERM)
        assert await restarted.wait() == 0


async def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """`collab serve` on a port already in use says so in one line and exits 2, without
    claiming to serve."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collab", "serve", "--port", str(port),
            "--db", str(tmp_path / "c.db"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(done.communicate(), 60 * TIMEOUT_FACTOR)
    assert done.returncode == 2
    assert err.decode().splitlines() == [f"collab: port {port} is in use (on 127.0.0.1)"]
    assert out == b""


@pytest.mark.parametrize(
    ("flags", "shown"), [([], False), (["--log-level", "debug"], True)], ids=["default", "debug"]
)
async def test_serve_shows_the_migrations_at_log_level_debug_only(
    tmp_path: Path, flags: list[str], shown: bool
) -> None:
    """`collab serve --log-level debug` on a new database logs Alembic's lines about the
    migrations it runs (in its `db upgrade` child); without the flag it logs none."""
    server = await process.start(tmp_path / "new.db", tmp_path / "log", *flags)
    try:
        text = await asyncio.to_thread((tmp_path / "log").read_text)
        assert ("alembic.runtime.migration: Running upgrade  -> 0001" in text) is shown
        assert ("alembic" in text) is shown
    finally:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_an_older_schema_is_upgraded_before_the_start_and_keeps_its_documents(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """`collab serve` on a database at an older revision says it upgrades it (from that
    revision to the newest), then serves what the database held."""
    db = tmp_path / "old.db"
    await asyncio.to_thread(_old_database, db, "from before the upgrade")
    server = await process.start(db, tmp_path / "log")
    try:
        text = await asyncio.to_thread((tmp_path / "log").read_text)
        head = await asyncio.to_thread(head_revision)
        assert f"upgrading the schema from 0006 to {head}" in text
        async with editor(session, server.url("kept")) as reader:
            assert str(reader) == "from before the upgrade"
    finally:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_startup_line_gives_the_editor_the_websocket_and_the_database(
    tmp_path: Path,
) -> None:
    """Once the port is bound, the log names the editor's address, the WebSocket endpoint
    and the database's absolute path."""
    server = await process.start(tmp_path / "collab.db", tmp_path / "log")
    try:
        text = await asyncio.to_thread((tmp_path / "log").read_text)
        port = server.port
        assert (
            f"serving the editor at http://127.0.0.1:{port}/ and WebSockets at "
            f"ws://127.0.0.1:{port}/ws/{{room}}; database {tmp_path / 'collab.db'}"
        ) in text
    finally:
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    # The README's quick start shows this very line, with the default port.
    line = next(line for line in text.splitlines() if "serving the editor" in line)
    shown = line[line.index("INFO collab:") :].replace(str(port), "1234")
    shown = shown.replace(str(tmp_path / "collab.db"), "/path/to/collab.db")
    assert "... " + shown in (ROOT_DIR / "README.md").read_text()


def test_open_server_on_public_address_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Serving 0.0.0.0 without auth or --allow-open exits 2 and explains why."""
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "--allow-open" in capsys.readouterr().err


def test_in_memory_database_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Every connection would open its own empty database: say so instead of serving."""
    assert main(["serve", "--db", ":memory:", "--port", "1"]) == 2
    assert "in-memory SQLite" in capsys.readouterr().err


# Runs `collab serve` in this interpreter; once /healthz answers, writes what is imported
# (and VmRSS) to argv[2] and stops the server with SIGTERM.
_IMPORTS_AFTER_START = """
import json, os, signal, socket, sys, threading, time

port, out = int(sys.argv[1]), sys.argv[2]

def probe():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
                if b" 200 " in s.recv(100):
                    break
        except OSError:
            pass
        time.sleep(0.05)
    status = open("/proc/self/status").read()
    rss = int(status.split("VmRSS:")[1].split()[0])
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "rss_kb": rss}, f)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
from collab.tools.cli import main
sys.exit(main(["serve", "--port", str(port), *sys.argv[3:]]))
"""


async def _imports_after_start(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _IMPORTS_AFTER_START,
        str(process.free_port()),
        str(out),
        *args,
        cwd=ROOT_DIR,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(), 60 * TIMEOUT_FACTOR)
    assert child.returncode == 0, err.decode(errors="replace")[-3000:]
    return set(json.loads(await asyncio.to_thread(out.read_text))["modules"])


def _upgrade_to(db: Path, revision: str) -> None:
    from alembic import command

    from collab.store.schema import _alembic_config

    command.upgrade(_alembic_config(database_url(str(db))), revision)


def _old_database(db: Path, text: str) -> None:
    """A database at revision 0006 holding one document, ``kept``, whose text is ``text``."""
    _upgrade_to(db, "0006")
    source: Doc[Any] = Doc()
    source.get(ROOT, type=Text).insert(0, text)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO documents (name, created_ms) VALUES ('kept', 1)")
        doc_id = conn.execute("SELECT id FROM documents").fetchone()[0]
        conn.execute(
            "INSERT INTO updates (doc_id, seq, created_ms, data) VALUES (?, 1, 2, ?)",
            (doc_id, source.get_update()),
        )


@pytest.mark.parametrize("schema", ["new", "current", "old"])
async def test_a_plain_sqlite_server_loads_no_driver_alembic_or_jwt(
    tmp_path: Path, schema: str
) -> None:
    """A started ``collab serve`` on SQLite without Redis, auth or webhooks has not imported
    asyncpg, redis, Alembic (a new database, or one at an older revision, is upgraded by a
    child process) or PyJWT, and its schema is at the newest revision."""
    db = tmp_path / "collab.db"
    if schema == "current":
        assert await asyncio.to_thread(main, ["db", "upgrade", "--db", str(db)]) == 0
    elif schema == "old":
        await asyncio.to_thread(_old_database, db, "kept")
    modules = await _imports_after_start(tmp_path, "--db", str(db), "--log-level", "warning")
    tops = {name.split(".")[0] for name in modules}
    assert tops & {"asyncpg", "redis", "alembic", "mako", "jwt", "cryptography"} == set()
    with sqlite3.connect(db) as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert revision == await asyncio.to_thread(head_revision)


async def test_with_auth_the_server_loads_jwt(tmp_path: Path) -> None:
    """Configured authentication is what brings PyJWT in (the check above can fail)."""
    modules = await _imports_after_start(
        tmp_path, "--db", str(tmp_path / "collab.db"), "--auth-secret", "s" * 32
    )
    assert "jwt" in modules and "alembic" not in modules
