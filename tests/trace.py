"""The automerge-paper editing trace (``tests/data``, CC BY 4.0) as Yjs updates, for history
tests.

A real paper typed one keystroke at a time: each patch becomes one pycrdt transaction, and
so one Yjs update, exactly what a y-websocket client sends per keystroke. ``texts[k]`` is
the document after ``k`` keystrokes, computed by applying the patches to a Python string
(independently of Yjs), so tests compare history against the trace itself.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

__all__ = ["TRACE", "Trace", "trace"]

TRACE = Path(__file__).resolve().parent / "data" / "automerge-paper.json.gz"


@dataclass(frozen=True, slots=True)
class Trace:
    updates: list[bytes]
    texts: list[str]


@functools.cache
def _patches() -> list[list[Any]]:
    data = json.loads(gzip.decompress(TRACE.read_bytes()))
    return [patch for txn in data["txns"] for patch in txn["patches"]]


def trace(count: int, client_id: int = 7) -> Trace:
    """The first ``count`` keystrokes: one update each, and the text after each."""
    doc: Doc[Any] = Doc(client_id=client_id)
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    texts = [""]
    current = ""
    for pos, deleted, inserted in _patches()[:count]:
        # The trace is ASCII: string indices are pycrdt's UTF-8 offsets.
        if deleted:
            del text[pos : pos + deleted]
        if inserted:
            text.insert(pos, inserted)
        current = current[:pos] + inserted + current[pos + deleted :]
        texts.append(current)
    assert str(text) == current
    return Trace(updates, texts)
