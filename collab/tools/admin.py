"""The operator's maintenance commands: ``collab db upgrade``, ``collab token create |
revoke``, ``collab purge`` and the backups, ``collab backup | dump | load``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Literal

from collab.config import Config, database_url
from collab.tools.options import common, database_path, seconds

__all__ = ["MAY_CREATE", "add_backup_commands", "purge", "token_create", "token_revoke", "upgrade"]


def upgrade(config: Config, _args: argparse.Namespace) -> int:
    """Create the schema or upgrade it to the newest revision."""
    from collab.store import Store

    async def run() -> None:
        store = Store(database_url(config.db))
        await store.open()
        await store.close()

    asyncio.run(run())
    print(f"schema of {config.db} is up to date")
    return 0


def token_create(config: Config, args: argparse.Namespace) -> int:
    """Mint a token and print it last."""
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
        expires = seconds(args.expires) if args.expires else None
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


def token_revoke(config: Config, args: argparse.Namespace) -> int:
    """Revoke a token by its jti (or the token itself)."""
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


def purge(config: Config, args: argparse.Namespace) -> int:
    """Remove documents deleted longer than ``deleted_retention`` ago (their histories
    are kept as retired lineages: docs/lineage.md)."""
    from collab.store import DocumentStore, Store, TokenStore, now_ms
    from collab.sync.lineage import state_vector_of

    async def run() -> tuple[list[str], int]:
        store = Store(database_url(config.db))
        await store.open()
        try:
            now = now_ms()
            before = now - int(config.deleted_retention * 1000)
            names = await DocumentStore(store).purge(
                before, dry_run=args.dry_run, state_vector=state_vector_of
            )
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


def reset(config: Config, args: argparse.Namespace) -> int:
    """Start document ``args.room`` over with a new lineage, empty or with the text of
    ``args.content``; its old history stays readable as a retired lineage
    (docs/lineage.md). Running servers close its editors with 4410 and reload it within
    ``revocation_poll`` seconds."""
    from collab.history.edit import text_update
    from collab.history.replay import TEXT_ROOT
    from collab.store import DocumentStore, Store
    from collab.sync.lineage import state_vector_of

    content = None
    if args.content is not None:
        try:
            with open(args.content, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"collab: cannot read {args.content}: {exc}", file=sys.stderr)
            return 2
        if len(text.encode()) > config.max_document_size:
            print(f"collab: {args.content} is larger than max_document_size", file=sys.stderr)
            return 2
        content = text_update(text, TEXT_ROOT) if text else None

    async def run() -> Any:
        store = Store(database_url(config.db))
        await store.open()
        try:
            return await DocumentStore(store).reset(
                args.room, state_vector_of, content, args.user, "cli-reset"
            )
        finally:
            await store.close()

    done = asyncio.run(run())
    if done is None:
        print(f"collab: no document named {args.room!r}", file=sys.stderr)
        return 1
    print(
        f"reset {args.room!r}: lineage {done.retired} retired (its history kept), now "
        f"{done.lineage}; running servers reload it within {config.revocation_poll:g}s"
    )
    return 0


def add_backup_commands(commands: Any) -> None:
    """Add ``backup``, ``dump`` and ``load`` to the parser's commands."""
    backup = commands.add_parser(
        "backup", help="copy the SQLite database, consistently, while the server runs"
    )
    backup.set_defaults(func=_backup)
    common(backup)
    backup.add_argument("target", metavar="FILE", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    dump = commands.add_parser("dump", help="write documents with their whole history to a file")
    dump.set_defaults(func=_dump)
    common(dump)
    dump.add_argument("rooms", nargs="*", metavar="ROOM", help="documents (default: all)")
    dump.add_argument(
        "--out", required=True, metavar="FILE", help="JSON Lines file; .gz compresses; - stdout"
    )

    load = commands.add_parser("load", help="load documents from a dump into this database")
    load.set_defaults(func=_load)
    common(load)
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
    # A new database is only worth keeping if the load fills it: one it created and then
    # failed to fill would pass for a good copy (an empty, migrated file where it was aimed).
    path = database_path(config)
    fresh = path is not None and not os.path.exists(path)
    there = {name for name in _database_files(path) if os.path.exists(name)} if path else set()
    loaded = False
    try:
        summary = asyncio.run(
            load(database_url(config.db), args.source, renames=renames, existing=existing)
        )
        loaded = True
    except (DumpError, DocumentExists, OSError) as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    finally:
        if fresh and not loaded and path is not None:
            for name in set(_database_files(path)) - there:
                try:
                    os.remove(name)
                except FileNotFoundError:
                    pass
    print(f"loaded {summary}")
    return 0


def _database_files(path: str) -> list[str]:
    """An SQLite file and the files SQLite and the migration lock keep beside it."""
    return [path, *(path + suffix for suffix in ("-wal", "-shm", "-journal", ".lock"))]


# The commands that may create the database they are given (the others refuse a missing one).
MAY_CREATE = frozenset({upgrade, token_create, _load})
