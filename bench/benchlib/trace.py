"""The late-join document: a real editing trace replayed into a pycrdt Doc, cached on disk.

Replaying automerge-paper (259,778 edits) takes ~10 s per copy in pycrdt, so the encoded
update is cached under the cache directory, keyed by the trace's sha256, the copy count
and the pycrdt version.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pycrdt

__all__ = ["TraceDoc", "load_trace_doc", "text_of"]

_CLIENT_BASE = 424_242


@dataclass(frozen=True, slots=True)
class TraceDoc:
    update: bytes  # the whole document as one Yjs v1 update
    text: str  # what every joiner must end up with
    edits: int
    cached: bool


def text_of(update: bytes) -> str:
    """The "content" text of a fresh Doc after applying update."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("content", type=pycrdt.Text)
    doc.apply_update(update)
    return str(text)


def _replay(patches: list[list[Any]], client_id: int) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    text = doc.get("content", type=pycrdt.Text)
    # one transaction per patch: a single huge transaction is ~10x slower in pycrdt 0.14
    for pos, deleted, inserted in patches:
        if deleted:
            del text[pos : pos + deleted]
        if inserted:
            text.insert(pos, inserted)
    return doc.get_update()


def load_trace_doc(path: Path, repeat: int, cache_dir: Path) -> TraceDoc:
    """Build (or load from cache) the trace's final document, repeated `repeat` times.

    Copy k is replayed into its own Doc with client id BASE + k, and the copies are merged:
    each copy's first character has no left origin, and Yjs orders such concurrent inserts
    by ascending client id, so the merged text is the final text repeated. This keeps the
    build linear in `repeat` and is checked against the expected text.

    Raises:
        ValueError: the trace does not reproduce its endContent.
    """
    raw = path.read_bytes()
    trace = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    expected = trace["endContent"] * repeat
    patches = [p for txn in trace["txns"] for p in txn["patches"]]
    key = f"{hashlib.sha256(raw).hexdigest()[:16]}-x{repeat}-pycrdt{version('pycrdt')}"
    cached = cache_dir / f"trace-{key}.bin"
    if cached.exists():
        update = cached.read_bytes()
        if text_of(update) == expected:
            return TraceDoc(update, expected, len(patches) * repeat, cached=True)
    one = _replay(patches, _CLIENT_BASE)
    copies = [one] + [_replay(patches, _CLIENT_BASE + k) for k in range(1, repeat)]
    update = pycrdt.merge_updates(*copies) if repeat > 1 else one
    if text_of(update) != expected:
        raise ValueError(f"replaying {path.name} did not reproduce its endContent")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(update)
    tmp.replace(cached)
    return TraceDoc(update, expected, len(patches) * repeat, cached=False)
