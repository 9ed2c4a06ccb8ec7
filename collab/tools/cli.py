"""Command line: the parser, settings, logging and ``main``.

The commands live by concept: ``serve`` (the server), ``admin`` (``db upgrade``, ``token
create | revoke``, ``purge``, ``reset``, ``backup | dump | load``) and ``history``
(``history | show | export | compact``); this module only wires their flags and runs the
one chosen.

Settings come from flags, then ``COLLAB_*`` environment variables, then the TOML file
given with ``--config`` (or ``COLLAB_CONFIG``), then defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from collab import __version__
from collab.config import Config
from collab.tools import admin
from collab.tools.history import add_history_commands
from collab.tools.logfilter import RepeatFilter
from collab.tools.options import common, database_exists, database_path
from collab.tools.serve import serve as serve_command

__all__ = ["main"]


# Flags that are not Config fields.
_NOT_SETTINGS = {"command", "db_command", "token_command", "config", "func"}
_REPEAT_INTERVAL = 10.0  # seconds a repeated warning or error is counted, not logged


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab",
        description="A real-time collaborative editing server for Yjs that keeps every edit.",
        epilog="Settings come from flags, then COLLAB_* variables, then the --config file. "
        "`collab COMMAND --help` lists a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"collab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.set_defaults(func=serve_command)
    common(serve)
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 1234)")
    serve.add_argument("--commit-interval", type=float, help="group-commit window, seconds")
    serve.add_argument("--max-message-size", type=int, help="bytes; larger closes with 1009")
    serve.add_argument("--room-grace", type=float, help="seconds before an empty room unloads")
    serve.add_argument("--heartbeat", type=float, help="seconds between pings (0: off)")
    serve.add_argument("--auth-secret", help="HS256 secret; turns authentication on")
    serve.add_argument("--auth-public-key", help="PEM public key file for external tokens")
    serve.add_argument(
        "--allow-open",
        action="store_const",
        const=True,
        help="allow serving without auth on a non-localhost address",
    )
    serve.add_argument("--allowed-origins", help="comma-separated Origins accepted")
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve wss:// directly")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument("--redis", help="Redis URL: relay rooms between several nodes")
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        help="seconds to send a request's headers; also the idle keep-alive (default 10)",
    )
    serve.add_argument("--listen-backlog", type=int, help="connections queued to accept (1024)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the schema")
    upgrade.set_defaults(func=admin.upgrade)
    common(upgrade)

    token = commands.add_parser("token", help="access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="mint a token (printed last)")
    create.set_defaults(func=admin.token_create)
    common(create)
    create.add_argument("--auth-secret", help="the server's secret (or COLLAB_AUTH_SECRET)")
    create.add_argument("--user", required=True, help="user id (the token's subject)")
    create.add_argument("--name", help="display name, shown as the author in history")
    create.add_argument(
        "--docs",
        action="append",
        default=[],
        help="document name pattern, e.g. 'team/*' (repeatable; required unless --admin)",
    )
    create.add_argument("--read-only", action="store_true", help="read access only")
    create.add_argument("--expires", help="lifetime, e.g. 3600, 90m, 12h, 30d (default: none)")
    create.add_argument("--admin", action="store_true", help="may revoke tokens over HTTP")
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token: running servers close its sockets within seconds"
    )
    revoke.set_defaults(func=admin.token_revoke)
    common(revoke)
    revoke.add_argument("token", metavar="JTI", help="the token's jti claim, or the token")

    purge = commands.add_parser(
        "purge", help="remove documents deleted longer than deleted_retention ago"
    )
    purge.set_defaults(func=admin.purge)
    common(purge)
    purge.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    start_over = commands.add_parser(
        "reset",
        help="start a document over with a new lineage (its history kept, its copies refused)",
    )
    start_over.set_defaults(func=admin.reset)
    common(start_over)
    start_over.add_argument("room", metavar="ROOM", help="the document")
    start_over.add_argument("--content", metavar="FILE", help="UTF-8 text it starts with")
    start_over.add_argument("--user", help="the author of that text")
    add_history_commands(commands)
    admin.add_backup_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    if args.func not in _MAY_CREATE and not database_exists(config):
        print(
            f"collab: no database at {database_path(config)} (`collab db upgrade --db ...` or "
            "`collab serve` creates one)",
            file=sys.stderr,
        )
        return 2
    repeats = _setup_logging(config.log_level, config.log_format)
    try:
        result: int = args.func(config, args)
    finally:
        repeats.flush(everything=True)  # the counts of repeats not yet summarised
    return result


def _config(args: argparse.Namespace) -> Config:
    options = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    options = {k: v for k, v in options.items() if k in Config.__dataclass_fields__}
    path = args.config or os.environ.get("COLLAB_CONFIG")
    file: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        file = data.get("collab", data)  # a [collab] table, or top-level keys
    return Config.from_env(os.environ, file, **options)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(level: str, fmt: str = "text") -> RepeatFilter:
    # Our loggers at the chosen level; libraries (aiosqlite logs every statement at DEBUG)
    # only from WARNING, except Alembic saying which migrations it ran.
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # One record per kind of warning or error per interval, then a count: out of file
    # descriptors, the event loop logs an error for every accept it retries.
    repeats = RepeatFilter(handler.handle, _REPEAT_INTERVAL)
    handler.addFilter(repeats)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("collab").setLevel(level.upper())
    # Alembic names every migration context it opens, for every command: detail for
    # --log-level debug, not for every run.
    logging.getLogger("alembic").setLevel("DEBUG" if level.lower() == "debug" else "WARNING")
    return repeats


# The commands that may create a database (load fills a new one from a dump); every other
# one refuses a missing SQLite file rather than create and migrate an empty one where a
# path was mistyped.


_MAY_CREATE = {serve_command, *admin.MAY_CREATE}
