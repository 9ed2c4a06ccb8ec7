"""Command line: ``collab serve``, ``collab db upgrade``, ``collab token create | revoke``,
``collab purge``, and the history commands ``collab history | show | export | compact``.

Settings come from flags, then ``COLLAB_*`` environment variables, then the TOML file
given with ``--config`` (or ``COLLAB_CONFIG``), then defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import logging
import os
import re
import sys
import tomllib
from collections.abc import Sequence
from typing import Any, Literal

from collab import __version__
from collab.config import Config, database_url
from collab.tools.logfilter import RepeatFilter

__all__ = ["main"]

log = logging.getLogger("collab")

# Flags that are not Config fields.
_NOT_SETTINGS = {"command", "db_command", "token_command", "config", "func"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_REPEAT_INTERVAL = 10.0  # seconds a repeated warning or error is counted, not logged
_OPEN_FILES_WITHOUT_HARD_LIMIT = 65536


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
    serve.set_defaults(func=_serve)
    _common(serve)
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 1234)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["text", "json"])
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
    upgrade.set_defaults(func=_upgrade)
    _common(upgrade)

    token = commands.add_parser("token", help="access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="mint a token (printed last)")
    create.set_defaults(func=_token_create)
    _common(create)
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
    revoke.set_defaults(func=_token_revoke)
    _common(revoke)
    revoke.add_argument("token", metavar="JTI", help="the token's jti claim, or the token")

    purge = commands.add_parser(
        "purge", help="remove documents deleted longer than deleted_retention ago"
    )
    purge.set_defaults(func=_purge)
    _common(purge)
    purge.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    _history_commands(commands)
    _backup_commands(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (or COLLAB_CONFIG)")
    parser.add_argument("--db", help="SQLite path or SQLAlchemy URL (default ./collab.db)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    if args.func not in _MAY_CREATE and not _database_exists(config):
        print(
            f"collab: no database at {_sqlite_path(config)} (`collab db upgrade --db ...` or "
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


def _sqlite_path(config: Config) -> str | None:
    """The absolute path of the SQLite file ``config`` names (``None`` for another engine or
    an in-memory database)."""
    from sqlalchemy import make_url

    url = make_url(database_url(config.db))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)


def _database_exists(config: Config) -> bool:
    """False only for an SQLite file that is not there (a mistyped ``--db``): the commands
    that read a database must not create an empty one. Other engines are asked by the
    command itself."""
    path = _sqlite_path(config)
    return path is None or os.path.exists(path)


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


def _upgrade(config: Config, _args: argparse.Namespace) -> int:
    from collab.store import Store

    async def run() -> None:
        store = Store(database_url(config.db))
        await store.open()
        await store.close()

    asyncio.run(run())
    print(f"schema of {config.db} is up to date")
    return 0


def _seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}: use e.g. 3600, 90m, 12h, 30d")
    return float(match[1]) * _SECONDS[match[2]]


def _token_create(config: Config, args: argparse.Namespace) -> int:
    from collab.auth import Access, mint

    if not config.auth_secret:
        print("collab: --auth-secret or COLLAB_AUTH_SECRET is required", file=sys.stderr)
        return 2
    if not args.docs and not args.admin:
        print("collab: give --docs PATTERN (or --admin)", file=sys.stderr)
        return 2
    if not args.user.strip():
        # The user id is the author of the token's edits when it has no name: an empty
        # one would let whoever holds the token name the author.
        print("collab: --user must not be empty", file=sys.stderr)
        return 2
    try:
        expires = _seconds(args.expires) if args.expires else None
    except ValueError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    access = Access.READ if args.read_only else Access.WRITE
    token = mint(
        config.auth_secret,
        user_id=args.user,
        name=args.name,
        docs=[(pattern, access) for pattern in args.docs],
        expires_in=expires,
        admin=args.admin,
    )
    rights = "read-only" if args.read_only else "read-write"
    scope = f"{rights} on {', '.join(args.docs)}" if args.docs else "no documents"
    print(f"token for {args.user} ({scope}{', admin' if args.admin else ''}): {token}")
    return 0


def _token_revoke(config: Config, args: argparse.Namespace) -> int:
    from collab.auth import token_id_of
    from collab.store import Store, TokenStore

    jti, expires = args.token, None
    if args.token.count(".") == 2:  # a whole token: revoke its jti, forget it once expired
        try:
            jti, expires = token_id_of(args.token)
        except ValueError as exc:
            print(f"collab: {exc}", file=sys.stderr)
            return 2

    async def run() -> bool:
        store = Store(database_url(config.db))
        await store.open()
        try:
            expires_ms = None if expires is None else int(expires * 1000)
            return await TokenStore(store).revoke(jti, expires_ms)
        finally:
            await store.close()

    fresh = asyncio.run(run())
    print(
        f"token {jti} {'revoked' if fresh else 'was already revoked'}; running servers "
        f"close its connections within {config.revocation_poll:g}s"
    )
    return 0


def _purge(config: Config, args: argparse.Namespace) -> int:
    from collab.store import DocumentStore, Store, TokenStore, now_ms

    async def run() -> tuple[list[str], int]:
        store = Store(database_url(config.db))
        await store.open()
        try:
            now = now_ms()
            before = now - int(config.deleted_retention * 1000)
            names = await DocumentStore(store).purge(before, dry_run=args.dry_run)
            tokens = 0 if args.dry_run else await TokenStore(store).purge(now)
            return names, tokens
        finally:
            await store.close()

    names, tokens = asyncio.run(run())
    for name in names:
        print(name)
    if args.dry_run:
        print(f"would purge {len(names)} deleted documents")
    else:
        print(f"purged {len(names)} deleted documents; forgot {tokens} expired revocations")
    return 0


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(config: Config, _args: argparse.Namespace) -> int:
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
        # aiohttp calls this once the socket is bound: only then is it true.
        log.info(
            "collab %s serving the editor at http%s://%s/ and WebSockets at ws%s://%s/ws/{room}"
            "; database %s",
            __version__,
            secure,
            where,
            secure,
            where,
            _sqlite_path(config) or _redacted(database_url(config.db)),
        )

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


# -- history: collab history | show | export | compact --------------------------------------


def _history_commands(commands: Any) -> None:
    history = commands.add_parser("history", help="a document's timeline, newest first")
    history.set_defaults(func=_history)
    _common(history)
    history.add_argument("room", help="document (room) name")
    history.add_argument("--raw", action="store_true", help="one line per stored update")
    history.add_argument("--gap", default="5m", help="pause that ends an entry (default 5m)")
    history.add_argument("--limit", type=int, default=50, help="entries (default 50)")
    history.add_argument("--json", action="store_true", help="print the API's JSON")

    for name, text in [
        ("show", "print a version of a document (default: the newest)"),
        ("export", "write a version as text, JSON or a Yjs update"),
    ]:
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(func=_show if name == "show" else _export)
        _common(sub)
        sub.add_argument("room", help="document (room) name")
        which = sub.add_mutually_exclusive_group()
        which.add_argument("--seq", help="version number (the document after update SEQ)")
        which.add_argument("--at", help="the version at a time (ISO-8601, UTC if no zone)")
        sub.add_argument("--root", help="one root (default: content, else all as JSON)")
        if name == "export":
            sub.add_argument("--format", required=True, choices=["text", "json", "yjs"])
            sub.add_argument("-o", "--output", help="file to write (default: stdout)")

    compact = commands.add_parser(
        "compact", help="merge old runs of updates into coarser steps (safe while serving)"
    )
    compact.set_defaults(func=_compact)
    _common(compact)
    compact.add_argument("rooms", nargs="*", help="documents (default: all)")
    compact.add_argument("--older-than", help="only updates older than this (e.g. 7d, 0)")
    compact.add_argument("--granularity", help="longest merged step (e.g. 60s, 5m)")
    compact.add_argument("--dry-run", action="store_true", help="report, change nothing")
    compact.add_argument("--vacuum", action="store_true", help="then shrink the file (SQLite)")


def _with_archive(config: Config, work: Any) -> int:
    """Open the store, run ``work(archive)``, report history errors as exit code 1."""
    from collab.history.replay import HistoryError
    from collab.history.service import Archive
    from collab.store import Store

    async def run() -> int:
        store = Store(database_url(config.db))
        await store.open()
        try:
            result: int = await work(Archive(store))
            return result
        except HistoryError as exc:
            print(f"collab: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await store.close()

    return asyncio.run(run())


def _history(config: Config, args: argparse.Namespace) -> int:
    async def work(archive: Any) -> int:
        head = await archive.head(args.room)
        gap_ms = int(_seconds(args.gap) * 1000)
        page = await archive.timeline(
            head, before=None, limit=max(1, args.limit), gap_ms=gap_ms, raw=args.raw
        )
        if args.json:
            print(json.dumps(page, ensure_ascii=False, indent=2))
            return 0
        info = await archive.info(head)
        storage = info["storage"]
        print(
            f"{head.name}: {head.last_seq} updates in {storage['rows']} rows; "
            f"{_size(storage['total_bytes'])} stored for a "
            f"{_size(storage['document_bytes'])} document"
        )
        for entry in page["entries"]:
            seqs = f"{entry['first_seq']}-{entry['seq']}"
            span = f"{entry['start'][:19].replace('T', ' ')} .. {entry['end'][11:19]}"
            names = f"  [{', '.join(entry['named'])}]" if entry["named"] else ""
            print(
                f"{seqs:>15}  {span}  {', '.join(entry['authors'])}  "
                f"+{entry['inserted']} -{entry['deleted']}{names}"
            )
        if page["next"]:
            print(f"... older entries before seq {page['next']}")
        return 0

    return _with_archive(config, work)


def _show(config: Config, args: argparse.Namespace) -> int:
    async def work(archive: Any) -> int:
        head = await archive.head(args.room)
        seq = await archive.resolve(head, args.seq, args.at)
        version = await archive.version_json(head, seq)
        content = version["content"]
        root = args.root or ("content" if "content" in content or not content else None)
        if root is None:
            print(json.dumps(content, ensure_ascii=False, indent=2))
        else:
            print(await archive.version_text(head, seq, root))
        return 0

    return _with_archive(config, work)


def _export(config: Config, args: argparse.Namespace) -> int:
    async def work(archive: Any) -> int:
        head = await archive.head(args.room)
        seq = await archive.resolve(head, args.seq, args.at)
        if args.format == "yjs":
            data = (await archive.version(head, seq)).state
        elif args.format == "json":
            data = json.dumps(await archive.version_json(head, seq), ensure_ascii=False).encode()
        else:
            data = (await archive.version_text(head, seq, args.root or "content")).encode()
        if args.output:
            await asyncio.to_thread(_write, args.output, data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return 0

    return _with_archive(config, work)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _compact(config: Config, args: argparse.Namespace) -> int:
    from collab.history.compaction import Policy

    try:
        if args.older_than is not None:
            config = config.replace(compact_after=_seconds(args.older_than))
        if args.granularity is not None:
            config = config.replace(compact_granularity=_seconds(args.granularity))
    except ValueError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    policy = Policy.from_config(config)

    async def work(archive: Any) -> int:
        names = args.rooms or await archive.db.document_names()
        before = after = 0
        for name in names:
            head = await archive.head(name)
            report = await archive.compact(head, policy, dry_run=args.dry_run)
            before += report["bytes_before"]
            after += report["bytes_after"]
            print(
                f"{name}: {report['rows_before']} -> {report['rows_after']} rows, "
                f"{_size(report['bytes_before'])} -> {_size(report['bytes_after'])}, "
                f"{report['runs']} runs merged, "
                f"{report['checkpoints_dropped']} checkpoints dropped"
            )
        verb = "would save" if args.dry_run else "saved"
        print(
            f"{len(names)} documents: {_size(before)} -> {_size(after)} ({verb} "
            f"{_size(before - after)})"
        )
        if args.vacuum and not args.dry_run:
            await archive.db.vacuum()
        return 0

    return _with_archive(config, work)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if abs(value) < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


# -- backups: collab backup | dump | load ---------------------------------------------------


def _backup_commands(commands: Any) -> None:
    backup = commands.add_parser(
        "backup", help="copy the SQLite database, consistently, while the server runs"
    )
    backup.set_defaults(func=_backup)
    _common(backup)
    backup.add_argument("target", metavar="FILE", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    dump = commands.add_parser("dump", help="write documents with their whole history to a file")
    dump.set_defaults(func=_dump)
    _common(dump)
    dump.add_argument("rooms", nargs="*", metavar="ROOM", help="documents (default: all)")
    dump.add_argument(
        "--out", required=True, metavar="FILE", help="JSON Lines file; .gz compresses; - stdout"
    )

    load = commands.add_parser("load", help="load documents from a dump into this database")
    load.set_defaults(func=_load)
    _common(load)
    load.add_argument("source", metavar="FILE", help="a file written by collab dump; - stdin")
    load.add_argument(
        "--rename", action="append", default=[], metavar="OLD=NEW", help="load OLD as NEW"
    )
    existing = load.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing", action="store_true", help="leave documents that exist alone"
    )
    existing.add_argument(
        "--replace", action="store_true", help="replace the history of documents that exist"
    )


def _backup(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from collab.tools.backup import NotSQLite, backup

    try:
        result = backup(config.db, Path(args.target), force=args.force)
    except (NotSQLite, OSError, ValueError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    if result.integrity != "ok":
        print(f"collab: the copy in {result.path} is damaged: {result.integrity}", file=sys.stderr)
        return 1
    print(
        f"backed up {config.db} to {result.path}: {result.bytes / 1e6:.1f} MB "
        f"({result.pages} pages) in {result.seconds:.2f}s; integrity ok"
    )
    return 0


def _dump(config: Config, args: argparse.Namespace) -> int:
    from collab.tools.dump import dump

    try:
        if "://" not in config.db and not os.path.isfile(config.db):
            raise FileNotFoundError(f"no database at {config.db}")
        summary = asyncio.run(dump(database_url(config.db), args.out, args.rooms or None))
    except (LookupError, OSError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    # With --out - the dump is on stdout, so the summary must not be.
    print(f"dumped {summary}", file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def _load(config: Config, args: argparse.Namespace) -> int:
    from collab.errors import CollabError
    from collab.store import DocumentExists
    from collab.sync.room import validate_room_name
    from collab.tools.dump import DumpError, load

    renames = {}
    for pair in args.rename:
        old, sep, new = pair.partition("=")
        try:
            validate_room_name(new if sep else "", config.max_room_name)
        except CollabError as exc:
            print(f"collab: --rename {pair!r}: {exc.reason} (use OLD=NEW)", file=sys.stderr)
            return 2
        renames[old] = new
    existing: Literal["fail", "skip", "replace"] = (
        "skip" if args.skip_existing else "replace" if args.replace else "fail"
    )
    try:
        summary = asyncio.run(
            load(database_url(config.db), args.source, renames=renames, existing=existing)
        )
    except (DumpError, DocumentExists, OSError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    print(f"loaded {summary}")
    return 0


# The commands that may create a database (load fills a new one from a dump); every other
# one refuses a missing SQLite file rather than create and migrate an empty one where a
# path was mistyped.
_MAY_CREATE = {_serve, _upgrade, _token_create, _load}
