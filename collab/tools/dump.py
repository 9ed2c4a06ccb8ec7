"""Moving documents between servers: ``collab dump`` and ``collab load``.

``dump`` writes documents with their whole history (every update with its seq, time,
author and connection, every checkpoint, every named version) to a versioned JSON Lines
file; ``load`` writes such a file into another database, where a server serves the
documents with the same text and the same history. The format is documented in the README
("Backups and moving documents"); its ``version`` changes whenever a reader of the old
version could misread the new one.

The queries are the store's (``DumpStore``): this module only encodes, decodes and checks,
and does its file I/O in worker threads. Nothing here runs inside the server process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from collab import __version__
from collab.store import DocumentExists, DumpBatch, DumpStore, Store, now_ms
from collab.sync.lineage import state_vector_of

__all__ = ["FORMAT", "VERSION", "DumpError", "Summary", "dump", "load"]

FORMAT = "collab-dump"
VERSION = 1
# The field of each record kind that holds bytes (base64 in the file).
_BLOBS = {"update": "data", "checkpoint": "state"}
_ROWS = ("update", "checkpoint", "named_version")
# Fields a record must have, with their JSON types: checked before anything is written, so
# a damaged file is reported by line rather than as a database error.
_REQUIRED: dict[str, dict[str, type]] = {
    "document": {"name": str, "created_ms": int},
    "update": {"seq": int, "created_ms": int},
    "checkpoint": {"upto_seq": int, "created_ms": int},
    "named_version": {"seq": int, "name": str, "created_ms": int},
}
_WRITE_CHUNK = 1 << 20  # bytes of lines buffered before a write
_LOAD_BATCH = 500  # rows per INSERT


class DumpError(ValueError):
    """The file is not a collab dump this version can read, or it is cut short."""


@dataclass(slots=True)
class Summary:
    """Counts of a dump or a load."""

    documents: int = 0
    updates: int = 0
    checkpoints: int = 0
    named_versions: int = 0
    skipped: list[str] = field(default_factory=list)

    def count(self, kind: str, rows: int) -> None:
        """Add ``rows`` rows of ``kind`` (``update``, ``checkpoint``, ``named_version``)."""
        name = kind + "s"
        setattr(self, name, getattr(self, name) + rows)

    def __str__(self) -> str:
        text = (
            f"{self.documents} documents ({self.updates} updates, {self.checkpoints} "
            f"checkpoints, {self.named_versions} named versions)"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)} that exist: {', '.join(self.skipped)}"
        return text


def _line(kind: str, fields: dict[str, Any]) -> str:
    record: dict[str, Any] = {"type": kind}  # first, so a reader can dispatch on a prefix
    for key, value in fields.items():
        record[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _open_out(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", write_through=True)
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _open_in(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _close(handle: IO[str], path: str) -> None:
    if path != "-":
        handle.close()
        return
    # Our wrapper around stdin or stdout goes, the process's stream stays open.
    handle.flush()
    if isinstance(handle, io.TextIOWrapper):
        handle.detach()


@contextlib.asynccontextmanager
async def _store(url: str, *, upgrade: bool) -> AsyncIterator[Store]:
    store = Store(url)
    await store.open(upgrade=upgrade)
    try:
        yield store
    finally:
        await store.close()


async def dump(url: str, out: str, names: list[str] | None = None) -> Summary:
    """Write the documents of database ``url`` (all, or ``names``) to file ``out``.

    ``out`` is a path (compressed with gzip when it ends in ``.gz``) or ``-`` for standard
    output. The database is read in one snapshot and never changed, not even upgraded.

    Raises:
        LookupError: a name in ``names`` is not a document.
    """
    summary = Summary()
    async with _store(url, upgrade=False) as store:
        source = DumpStore(store)
        if names is not None:
            missing = sorted(set(names) - await source.document_names(names))
            if missing:
                raise LookupError(f"no such document: {', '.join(missing)}")
        schema, _head = await store.schema_status()
        handle = await asyncio.to_thread(_open_out, out)
        try:
            buffered: list[str] = []
            size = 0

            async def write(line: str) -> None:
                nonlocal size
                buffered.append(line)
                size += len(line)
                if size >= _WRITE_CHUNK:
                    await asyncio.to_thread(handle.write, "".join(buffered))
                    buffered.clear()
                    size = 0

            header = {"format": FORMAT, "version": VERSION, "collab": __version__}
            await write(_line("header", {**header, "created_ms": now_ms(), "schema": schema}))
            current: dict[str, Any] | None = None
            async with contextlib.aclosing(source.dump(names)) as batches:
                async for batch in batches:
                    if batch.kind == "document":
                        if current is not None:
                            await write(_line("document_end", current))
                        current = {"name": batch.rows[0]["name"]}
                        current.update((kind + "s", 0) for kind in _ROWS)
                        summary.documents += 1
                        await write(_line("document", batch.rows[0]))
                        continue
                    assert current is not None
                    current[batch.kind + "s"] += len(batch.rows)
                    summary.count(batch.kind, len(batch.rows))
                    for row in batch.rows:
                        await write(_line(batch.kind, row))
            if current is not None:
                await write(_line("document_end", current))
            await write(_line("end", {"documents": summary.documents}))
            await asyncio.to_thread(handle.write, "".join(buffered))
        finally:
            await asyncio.to_thread(_close, handle, out)
    return summary


# -- load ---------------------------------------------------------------------------------


def _records(handle: IO[str]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    async def read() -> AsyncIterator[tuple[int, dict[str, Any]]]:
        number = 0
        while True:
            lines = await asyncio.to_thread(handle.readlines, _WRITE_CHUNK)
            if not lines:
                return
            for line in lines:
                number += 1
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DumpError(f"line {number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                    raise DumpError(f"line {number}: not a collab dump record")
                yield number, record

    return read()


def _document_names(path: str) -> list[str]:
    # A first pass over a file (not a pipe) to refuse conflicts before loading anything.
    # Document records start with this prefix, so the long update lines are not parsed.
    names = []
    with _open_in(path) as handle:
        for line in handle:
            if line.startswith('{"type":"document",'):
                names.append(json.loads(line)["name"])
    return names


def _check_header(number: int, record: dict[str, Any]) -> None:
    if record.get("type") != "header" or record.get("format") != FORMAT:
        raise DumpError(f"line {number}: not a collab dump (no {FORMAT} header)")
    version = record.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise DumpError(
            f"this is a version {version} dump; collab {__version__} reads version "
            f"{VERSION} and older: load it with a newer collab"
        )


def _check_fields(kind: str, record: dict[str, Any], number: int) -> None:
    for name, kind_of in _REQUIRED[kind].items():
        if not isinstance(record.get(name), kind_of):
            raise DumpError(f"line {number}: {kind} without a valid {name!r}")


def _row(kind: str, record: dict[str, Any], number: int) -> dict[str, Any]:
    _check_fields(kind, record, number)
    row = {k: v for k, v in record.items() if k != "type"}
    blob = _BLOBS.get(kind)
    if blob is not None:
        try:
            row[blob] = base64.b64decode(row[blob], validate=True)
        except (KeyError, TypeError, ValueError):
            raise DumpError(f"line {number}: {kind} without valid base64 {blob!r}") from None
    return row


async def load(
    url: str,
    source: str,
    *,
    renames: dict[str, str] | None = None,
    existing: Literal["fail", "skip", "replace"] = "fail",
) -> Summary:
    """Load the dump in file ``source`` (a path, or ``-`` for standard input) into the
    database ``url``, creating or upgrading its schema first.

    Each document is written in one transaction. With ``existing="fail"`` a document that
    already exists stops the load before anything is written (for a pipe: before that
    document); ``skip`` leaves such documents alone; ``replace`` swaps their history for
    the dump's. A running server must not have a replaced document open.

    Raises:
        DumpError: not a readable dump, or a cut-short one (the document being read when
            the file ended is not loaded).
        DocumentExists: a document exists and ``existing`` is ``fail``.
    """
    renames = renames or {}
    summary = Summary()
    async with _store(url, upgrade=True) as store:
        target = DumpStore(store)
        if existing == "fail" and source != "-":
            names = await asyncio.to_thread(_document_names, source)
            clash = await target.document_names([renames.get(n, n) for n in names])
            if clash:
                raise DocumentExists(
                    f"already in the database: {', '.join(sorted(clash))} "
                    "(use --skip-existing or --replace)"
                )
        handle = await asyncio.to_thread(_open_in, source)
        try:
            await _load_records(target, _records(handle), renames, existing, summary)
        finally:
            await asyncio.to_thread(_close, handle, source)
    return summary


async def _load_records(
    target: DumpStore,
    records: AsyncIterator[tuple[int, dict[str, Any]]],
    renames: dict[str, str],
    existing: str,
    summary: Summary,
) -> None:
    number, first = await anext(records, (0, {}))
    if not first:
        raise DumpError("empty file: not a collab dump")
    _check_header(number, first)
    async for number, record in records:
        kind = record["type"]
        if kind == "document":
            _check_fields(kind, record, number)
            name = renames.get(record["name"], record["name"])
            replace = existing == "replace"
            try:
                lineage = record.get("lineage")
                if lineage is not None and not (
                    isinstance(lineage, str) and 0 < len(lineage) <= 32
                ):
                    raise DumpError(f"line {number}: a lineage is a string of 1 to 32 characters")
                loading = target.load(
                    name,
                    record["created_ms"],
                    replace=replace,
                    lineage=lineage,
                    state_vector=state_vector_of,
                )
                async with loading as insert:
                    counts = await _load_rows(records, name, insert)
            except DocumentExists:
                if existing != "skip":
                    raise
                await _load_rows(records, name, None)
                summary.skipped.append(name)
                continue
            summary.documents += 1
            for kind, rows in counts.items():
                summary.count(kind, rows)
        elif kind == "end":
            if record.get("documents") != summary.documents + len(summary.skipped):
                raise DumpError(
                    f"line {number}: the dump says {record.get('documents')} documents"
                )
            return
        else:
            raise DumpError(f"line {number}: {kind} record outside a document")
    raise DumpError("the dump ends early (no end record): it was cut short")


async def _load_rows(
    records: AsyncIterator[tuple[int, dict[str, Any]]],
    name: str,
    insert: Callable[[DumpBatch], Awaitable[None]] | None,
) -> dict[str, int]:
    """Read one document's rows up to its end record, inserting them in batches (or
    only counting them, when ``insert`` is None: a skipped document)."""
    counts = dict.fromkeys(_ROWS, 0)
    pending: list[dict[str, Any]] = []
    pending_kind = ""
    last_seq = 0
    async for number, record in records:
        kind = record["type"]
        if kind in _ROWS:
            counts[kind] += 1
            if insert is None:
                continue
            if kind == "update":
                seq = record.get("seq")
                if not isinstance(seq, int) or seq <= last_seq:
                    raise DumpError(f"line {number}: update seqs must increase")
                last_seq = seq
            if pending and (kind != pending_kind or len(pending) >= _LOAD_BATCH):
                await insert(DumpBatch(pending_kind, pending))
                pending = []
            pending_kind = kind
            pending.append(_row(kind, record, number))
        elif kind == "document_end":
            expected = {k: record.get(k + "s") for k in _ROWS}
            if expected != counts:
                raise DumpError(
                    f"line {number}: document {name!r} should have {expected}, has {counts}"
                )
            if pending and insert is not None:
                await insert(DumpBatch(pending_kind, pending))
            return counts
        else:
            raise DumpError(f"line {number}: {kind} record inside document {name!r}")
    raise DumpError(f"the dump ends inside document {name!r}: it was cut short, not loaded")
