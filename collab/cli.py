"""Command line: ``collab serve`` and ``collab db upgrade``.

Settings come from flags, then ``COLLAB_*`` environment variables, then defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from collab import __version__
from collab.config import Config, database_url

__all__ = ["main"]

log = logging.getLogger("collab")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"collab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 1234)")
    _db_flag(serve)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--commit-interval", type=float, help="group-commit window, seconds")
    serve.add_argument("--max-message-size", type=int, help="bytes; larger closes with 1009")
    serve.add_argument("--room-grace", type=float, help="seconds before an empty room unloads")
    serve.add_argument("--heartbeat", type=float, help="seconds between pings (0: off)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the schema")
    _db_flag(upgrade)
    return parser


def _db_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLite path or SQLAlchemy URL (default ./collab.db)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("command", "db_command")}
    try:
        config = Config.from_env(os.environ, **options)
    except ValueError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    if args.command == "db":
        asyncio.run(_upgrade(config))
        print(f"schema of {config.db} is up to date")
        return 0
    return _serve(config)


def _setup_logging(level: str) -> None:
    # Our loggers at the chosen level; libraries (aiosqlite logs every statement at DEBUG)
    # only from WARNING, except Alembic saying which migrations it ran.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("collab").setLevel(level.upper())
    logging.getLogger("alembic.runtime.migration").setLevel(level.upper())


async def _upgrade(config: Config) -> None:
    from collab.store import Store

    store = Store(database_url(config.db))
    await store.open()
    await store.close()


def _serve(config: Config) -> int:
    from aiohttp import web

    from collab.server import create_app

    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    log.info("collab %s serving ws://%s:%d/ws/{room}", __version__, config.host, config.port)
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        loop=loop_factory() if loop_factory else None,
    )
    log.info("collab stopped")
    return 0
