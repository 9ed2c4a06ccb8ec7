"""``collab serve``: check the settings, raise the open-file limit, run the server.

The one command that imports the HTTP app (``collab.http.app``), and only when it runs.
A schema that needs upgrading is upgraded by ``collab db upgrade`` in a child process
before the server starts: Alembic costs a process about 11 MB of memory it never gives
back, and a server only needs it once in its database's life (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import errno
import gc
import ipaddress
import logging
import os
import socket
import sqlite3
import sys
from typing import Any

from collab import __version__
from collab.config import Config, database_url
from collab.tools.options import database_path

__all__ = ["serve"]

log = logging.getLogger("collab")

_OPEN_FILES_WITHOUT_HARD_LIMIT = 65536


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: Config, _args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; the exit code is 0 after a clean stop."""
    import ssl

    from aiohttp import web

    from collab.http.app import create_app
    from collab.store import check_url

    try:
        check_url(database_url(config.db))
    except ValueError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    if not config.auth_enabled:
        if not _is_local(config.host) and not config.allow_open:
            print(
                f"collab: refusing to serve {config.host} without authentication. Set "
                "--auth-secret (see README, Authentication), or pass --allow-open to let "
                "anyone on the network read and write every document.",
                file=sys.stderr,
            )
            return 2
        if not _is_local(config.host):
            log.warning(
                "AUTHENTICATION IS OFF on %s: anyone who can reach this port can read and "
                "write every document",
                config.host,
            )
    if config.handshake_timeout <= 0:
        print("collab: handshake_timeout must be more than 0 seconds", file=sys.stderr)
        return 2
    # Before anything is logged or migrated: a port in use is one line and nothing else.
    # aiohttp binds later, so a port taken in between still ends in the same line below.
    if _port_in_use(config.host, config.port):
        print(f"collab: port {config.port} is in use (on {config.host})", file=sys.stderr)
        return 2
    limit = _raise_open_files()
    if limit is not None and limit < config.max_connections:
        log.warning(
            "the open-file limit (%d) is below max_connections (%d): past about %d "
            "connections the server runs out of descriptors instead (raise the hard limit: "
            "ulimit -Hn, LimitNOFILE= in systemd)",
            limit,
            config.max_connections,
            limit,
        )
    ssl_context = None
    if config.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.certfile, config.keyfile or None)
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    secure = "s" if ssl_context else ""
    where = f"{config.host}:{config.port}"

    def serving(_: str) -> None:
        # Started: what exists now (modules, code objects, the app, the store: about
        # 80,000 objects) lives as long as the process. Frozen out of the collector's
        # sight, the full collections a burst of connects triggers walk only what came
        # after (4% of the instructions of a connect to a new room).
        gc.freeze()
        # aiohttp calls this once the socket is bound: only then is it true.
        log.info(
            "collab %s serving the editor at http%s://%s/ and WebSockets at ws%s://%s/ws/{room}"
            "; database %s",
            __version__,
            secure,
            where,
            secure,
            where,
            database_path(config) or _redacted(database_url(config.db)),
        )

    _upgrade_in_child(config)
    try:
        _run(web, create_app(config), config, ssl_context, loop, serving)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"collab: port {config.port} is in use (on {config.host})", file=sys.stderr)
            return 2
        if exc.errno == errno.EADDRNOTAVAIL:
            print(f"collab: cannot listen on {config.host}: no such address", file=sys.stderr)
            return 2
        raise
    log.info("collab stopped")
    return 0


def _upgrade_in_child(config: Config) -> None:
    """Bring the schema to the newest revision in a child process if it is not there yet.

    Whether it is takes one query (``_schema_status``), in this process; the child, which
    loads Alembic and opens the database as ``collab db upgrade``, runs only when the
    answer is no. If the child fails, the server's own ``Store.open`` upgrades (and reports
    whatever went wrong) as it always did: this only keeps Alembic out of the server's
    memory.
    """
    import subprocess

    from sqlalchemy.exc import SQLAlchemyError

    try:
        current, head = _schema_status(config)
    except (SQLAlchemyError, sqlite3.Error, OSError, ValueError) as exc:
        # Whatever it is, the server's own start meets it again and reports it properly.
        log.debug("schema check before start failed: %s", exc)
        return
    if current == head:
        return
    log.info("upgrading the schema from %s to %s", current or "nothing", head)
    # The child logs as this process does: `serve --log-level debug` shows Alembic's lines.
    done = subprocess.run(
        [sys.executable, "-m", "collab", "db", "upgrade", "--db", config.db],
        stdout=subprocess.DEVNULL,
        env={
            **os.environ,
            "COLLAB_LOG_LEVEL": config.log_level,
            "COLLAB_LOG_FORMAT": config.log_format,
        },
        check=False,
    )
    if done.returncode != 0:
        log.warning("collab db upgrade exited with %d; upgrading in-process", done.returncode)


def _schema_status(config: Config) -> tuple[str | None, str | None]:
    """The database's schema revision and the newest one this code knows, as
    ``Store.schema_status`` says them, without a Store: an SQLite file is asked on a plain
    ``sqlite3`` connection (5 to 8 ms of CPU with reading the scripts; a Store's engines,
    threads and event loop took 35 to 48), another engine on one connection of an engine
    without a pool.
    """
    from collab.store.schema import file_revision, head_revision

    path = database_path(config)
    if path is not None:
        return file_revision(path, config.db_timeout), head_revision()
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from collab.store.schema import current_revision

    async def ask() -> str | None:
        engine = create_async_engine(database_url(config.db), poolclass=NullPool)
        try:
            async with asyncio.timeout(config.db_timeout), engine.connect() as conn:
                return await conn.run_sync(current_revision)
        finally:
            await engine.dispose()

    return asyncio.run(ask()), head_revision()


def _port_in_use(host: str, port: int) -> bool:
    """Whether another socket listens on ``host:port``, asked by binding as asyncio would
    (``SO_REUSEADDR``, IPv6 sockets IPv6-only). Any other failure is left to the real bind,
    which reports it."""
    if port == 0:
        return False
    try:
        addresses = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def _redacted(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _run(web: Any, app: Any, config: Config, ssl_context: Any, loop: Any, serving: Any) -> None:
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_context,
        access_log=None,
        print=serving,
        shutdown_timeout=5.0,
        loop=loop,
        backlog=config.listen_backlog,
        # aiohttp arms this timer when a connection opens and again after each response,
        # and closes the connection if no complete request head arrived by then: it is
        # both the deadline for a request's headers (slowloris) and the idle keep-alive.
        keepalive_timeout=config.handshake_timeout,
    )


def _raise_open_files() -> int | None:
    """Raise the soft open-file limit to the hard one: every connection is a descriptor,
    and the usual default of 1024 is a tenth of ``max_connections``' default.

    Returns:
        The soft limit now in force (``None``: unlimited, or unknown on this platform).
    """
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    # No hard limit (macOS): the kernel still caps the soft one, so aim for a number.
    target = hard if hard != unlimited else _OPEN_FILES_WITHOUT_HARD_LIMIT
    hard_text = "none" if hard == unlimited else str(hard)
    if soft == unlimited or soft >= target:
        log.info("open-file limit: %s (hard limit %s)", soft, hard_text)
        return None if soft == unlimited else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:  # not permitted here: serve with what there is
        log.info("open-file limit stays %d (hard limit %s): %s", soft, hard_text, exc)
        return soft
    log.info("open-file limit raised from %d to %d (hard limit %s)", soft, target, hard_text)
    return target
