"""Rich-text history benchmark: diff and blame of a Tiptap-shaped document of many edits.

Builds (seeded) a document the way Tiptap stores it, a ``Y.XmlFragment`` "default" of
paragraphs each holding one ``Y.XmlText``, by 60,000 edits, one update each as an editor
sends keystrokes: typing at a cursor (85 %), deleting before it (8 %), splitting off a new
paragraph (3 %), making a random range bold, italic or a link (2 %), moving the cursor to
a random place (2 %). Stored through collab's own Store with a checkpoint every 1,000
updates, twice: once by one author, once by two authors taking turns every 500 edits.
Then times, through ``History`` (what the HTTP API calls): the rich-text diff between two
distant versions, blame of the newest version, and the ProseMirror JSON of the newest.

    .venv/bin/python bench/rich_bench.py [--edits N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.config import database_url
from collab.history.service import History
from collab.store import Store

START_MS = 1_700_000_000_000
LETTERS = "etaoin shrdlu cmfwyp vbgkqj xz ETAOIN é"
FORMATS: list[dict[str, Any]] = [
    {"bold": {}},
    {"italic": {}},
    {"link": {"href": "https://example.org/"}},
]


def build(count: int, seed: int = 12) -> tuple[list[bytes], list[bytes]]:
    """``count`` updates, and a checkpoint (the whole document) every 1,000."""
    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    checkpoints: list[bytes] = []
    paragraphs: list[XmlText] = []
    lengths: list[int] = []  # in pycrdt units (UTF-8 bytes)

    def new_paragraph(at: int) -> None:
        element = fragment.children.insert(at, XmlElement("paragraph"))
        paragraphs.insert(at, element.children.append(XmlText()))
        lengths.insert(at, 0)

    new_paragraph(0)
    para, cursor = 0, 0
    while len(updates) < count:
        roll = rng.random()
        text = paragraphs[para]
        if roll < 0.85:
            letter = rng.choice(LETTERS)
            text.insert(cursor, letter)
            cursor += len(letter.encode())
            lengths[para] += len(letter.encode())
        elif roll < 0.93:
            if cursor == 0:
                continue
            units = _last_char_units(text, cursor)
            del text[cursor - units : cursor]
            cursor -= units
            lengths[para] -= units
        elif roll < 0.96:
            new_paragraph(para + 1)
            para, cursor = para + 1, 0
        elif roll < 0.98:
            if lengths[para] < 2:
                continue
            start = _char_boundary(text, rng.randrange(lengths[para] - 1))
            end = _char_boundary(text, rng.randrange(start + 1, lengths[para] + 1))
            if end > start:
                text.format(start, end, rng.choice(FORMATS))
        else:
            para = rng.randrange(len(paragraphs))
            cursor = _char_boundary(paragraphs[para], rng.randrange(lengths[para] + 1))
    updates = updates[:count]
    # A checkpoint every 1,000 updates, as the server writes them (an edit may make two).
    replayed: Doc[Any] = Doc()
    for seq, update in enumerate(updates, 1):
        replayed.apply_update(update)
        if seq % 1000 == 0:
            checkpoints.append(replayed.get_update())
    return updates, checkpoints


def _boundaries(text: XmlText) -> list[int]:
    out, at = [0], 0
    for content, _ in text.diff():
        for ch in content if isinstance(content, str) else " ":
            at += len(ch.encode()) if isinstance(content, str) else 1
            out.append(at)
    return out


def _char_boundary(text: XmlText, units: int) -> int:
    return max(b for b in _boundaries(text) if b <= units)


def _last_char_units(text: XmlText, cursor: int) -> int:
    bounds = _boundaries(text)
    before = max(b for b in bounds if b < cursor)
    return cursor - before


async def store_doc(  # as bench/history_bench.py stores the trace
    store: Store, name: str, updates: list[bytes], checkpoints: list[bytes], authors: list[str]
) -> None:
    doc_id = (await store.load(name)).doc_id
    for seq, update in enumerate(updates, 1):
        store.append(
            doc_id,
            seq,
            update,
            connection_id="c1",
            author=authors[seq - 1],
            created_ms=START_MS + 200 * seq,
        )
        if seq % 1000 == 0:
            store.checkpoint(doc_id, seq, checkpoints[seq // 1000 - 1])
            await store.flush()
    await store.flush()


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 3) -> tuple[float, Any]:
    """The best of ``repeat`` runs, in milliseconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        best = min(best, (time.perf_counter() - start) * 1000)
    return best, result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=60_000)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    updates, checkpoints = build(args.edits)
    final: Doc[Any] = Doc()
    for update in updates:
        final.apply_update(update)
    size = len(final.get_update())
    paragraphs = len(final.get("default", type=XmlFragment).children)
    print(
        f"document: {len(updates):,} edits, {paragraphs} paragraphs, {size:,} B as one update "
        f"(built in {time.perf_counter() - started:.0f} s)"
    )
    two = [("ann", "ben")[(k // 500) % 2] for k in range(len(updates))]
    report: dict[str, Any] = {"edits": len(updates), "paragraphs": paragraphs, "bytes": size}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(database_url(str(Path(tmp) / "rich-bench.db")))
        await store.open()
        try:
            await store_doc(store, "one", updates, checkpoints, ["ann"] * len(updates))
            await store_doc(store, "two", updates, checkpoints, two)
            history = History(store)
            old, new = len(updates) // 6, len(updates)
            for name in ("one", "two"):
                head = await history.head(name)
                ms, diff = await timed(lambda h=head: history.diff(h, old, new, None))
                line = f"{name} author(s): diff {old} -> {new}: {ms:.0f} ms"
                line += f" (+{diff['inserted']:,} -{diff['deleted']:,} ~{diff['formatted']:,})"
                report[f"diff_{name}_ms"] = round(ms, 1)
                ms, blame = await timed(lambda h=head: history.blame(h, new, None))
                line += f"; blame of {new}: {ms:.0f} ms ({len(blame['authors'])} authors)"
                report[f"blame_{name}_ms"] = round(ms, 1)
                ms, _ = await timed(lambda h=head: history.version_rich(h, new, None, "html"))
                line += f"; html of {new}: {ms:.0f} ms"
                report[f"html_{name}_ms"] = round(ms, 1)
                print(line)
        finally:
            await store.close()
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
