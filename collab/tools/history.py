"""The history commands: ``collab history | show | export | compact``.

Each opens the store, runs one ``collab.history.service.History`` call per document and
prints the result; ``HistoryError`` becomes a message and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from collab.config import Config, database_url
from collab.tools.options import common, seconds

__all__ = ["add_history_commands"]


def add_history_commands(commands: Any) -> None:
    """Add ``history``, ``show``, ``export`` and ``compact`` to the parser's commands."""
    history = commands.add_parser("history", help="a document's timeline, newest first")
    history.set_defaults(func=_history)
    common(history)
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
        common(sub)
        sub.add_argument("room", help="document (room) name")
        which = sub.add_mutually_exclusive_group()
        which.add_argument("--seq", help="version number (the document after update SEQ)")
        which.add_argument("--at", help="the version at a time (ISO-8601, UTC if no zone)")
        sub.add_argument("--root", help="one root (default: content, else all as JSON)")
        if name == "export":
            sub.add_argument(
                "--format", required=True, choices=["text", "json", "yjs", "prosemirror", "html"]
            )
            sub.add_argument("-o", "--output", help="file to write (default: stdout)")

    compact = commands.add_parser(
        "compact", help="merge old runs of updates into coarser steps (safe while serving)"
    )
    compact.set_defaults(func=_compact)
    common(compact)
    compact.add_argument("rooms", nargs="*", help="documents (default: all)")
    compact.add_argument("--older-than", help="only updates older than this (e.g. 7d, 0)")
    compact.add_argument("--granularity", help="longest merged step (e.g. 60s, 5m)")
    compact.add_argument("--dry-run", action="store_true", help="report, change nothing")
    compact.add_argument("--vacuum", action="store_true", help="then shrink the file (SQLite)")


def _with_archive(config: Config, work: Any) -> int:
    """Open the store, run ``work(history)``, report history errors as exit code 1."""
    from collab.history.replay import HistoryError
    from collab.history.service import History
    from collab.store import Store

    async def run() -> int:
        store = Store(database_url(config.db))
        await store.open()
        try:
            result: int = await work(History(store))
            return result
        except HistoryError as exc:
            print(f"collab: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await store.close()

    return asyncio.run(run())


def _history(config: Config, args: argparse.Namespace) -> int:
    async def work(history: Any) -> int:
        head = await history.head(args.room)
        gap_ms = int(seconds(args.gap) * 1000)
        page = await history.timeline(
            head, before=None, limit=max(1, args.limit), gap_ms=gap_ms, raw=args.raw
        )
        if args.json:
            print(json.dumps(page, ensure_ascii=False, indent=2))
            return 0
        info = await history.info(head)
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
    async def work(history: Any) -> int:
        head = await history.head(args.room)
        seq = await history.resolve(head, args.seq, args.at)
        version = await history.version_json(head, seq)
        content = version["content"]
        root = args.root or ("content" if "content" in content or not content else None)
        if root is None:
            print(json.dumps(content, ensure_ascii=False, indent=2))
        else:
            print(await history.version_text(head, seq, root))
        return 0

    return _with_archive(config, work)


def _export(config: Config, args: argparse.Namespace) -> int:
    async def work(history: Any) -> int:
        head = await history.head(args.room)
        seq = await history.resolve(head, args.seq, args.at)
        if args.format == "yjs":
            data = (await history.version(head, seq)).state
        elif args.format == "json":
            data = json.dumps(await history.version_json(head, seq), ensure_ascii=False).encode()
        elif args.format in ("prosemirror", "html"):  # a rich-text root (docs/rich-text.md)
            _, document = await history.version_rich(head, seq, args.root, args.format)
            text = document if isinstance(document, str) else json.dumps(document)
            data = text.encode()
        else:  # the main root (content, else the rich-text root) unless --root
            data = (await history.version_text(head, seq, args.root)).encode()
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
            config = config.replace(compact_after=seconds(args.older_than))
        if args.granularity is not None:
            config = config.replace(compact_granularity=seconds(args.granularity))
    except ValueError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    policy = Policy.from_config(config)

    async def work(history: Any) -> int:
        names = args.rooms or await history.db.document_names()
        before = after = 0
        for name in names:
            head = await history.head(name)
            report = await history.compact(head, policy, dry_run=args.dry_run)
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
            await history.db.vacuum()
        return 0

    return _with_archive(config, work)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if abs(value) < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
