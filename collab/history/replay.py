"""Turning stored rows back into documents, versions and a timeline.

PURE: takes bytes and rows the store fetched and returns ``pycrdt.Doc`` objects, JSON-ready
values and timeline entries; never runs SQL (``collab.store`` does), never awaits, never touches
a socket.

A *version* is the document right after one stored update: version ``seq`` is everything
in updates ``1..seq``. Compaction (``compaction.py``) merges a run of old updates into one
row keyed by the run's last ``seq``, so a row always covers the seqs after the previous
row up to its own; the seqs inside a merged run are no longer versions of their own, and
asking for one gives the version before the run (nothing after the asked-for seq is ever
included).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.clock import format_ms
from collab.errors import BadRequest, Conflict, HistoryError, NotFound, ProtocolError
from collab.history.richtext import XML_FRAGMENT, tree_of, xml_kind, xml_string
from collab.row import Row, TimelineRow, identity
from collab.sync.tree import unreadable_roots
from collab.sync.update import measure
from collab.sync.validator import check_update
from collab.sync.ydoc import is_panic

__all__ = [
    "BadRequest",
    "Conflict",
    "Entry",
    "HistoryError",
    "NotFound",
    "Row",
    "Timeline",
    "content_of",
    "format_ms",
    "identity",
    "parse_time",
    "replay",
    "root_kinds",
    "well_formed",
    "root_value",
]

TEXT_ROOT = "content"
"""The Y.Text that collab's own tools read and write (README, "Root name")."""

MAX_GROUP = 500
"""A timeline entry never spans more updates than this, however fast someone types: it
bounds the work of one timeline page (every row on a page is read, and measured if it was
stored without counts, ~5 µs each with its fetch). 500 keystrokes are a couple of minutes
of steady typing."""


def replay(
    checkpoint: bytes | None, updates: Iterable[bytes], skipped: list[int] | None = None
) -> Doc[Any]:
    """Rebuild a document from a checkpoint and the updates stored after it.

    A stored row that cannot be applied is quarantined, never a reason the document will
    not open: one that fails the validator's encoding check, or that yrs refuses
    (``ValueError``, nothing applied), is skipped; one that
    makes yrs panic, or that leaves the document panicking on the next read, is left out
    and the document rebuilt without it. The row stays in the database; the caller
    reports it (``skipped``).

    Args:
        checkpoint: the whole document as of some update, or ``None`` to start empty.
        updates: the updates after that checkpoint, in sequence order.
        skipped: if given, receives the position in ``updates`` of every update left out,
            and ``-1`` for a checkpoint left out.

    Returns:
        A new document holding all of them, but the quarantined ones.
    """
    out = skipped if skipped is not None else []
    base = checkpoint
    doc: Doc[Any] = Doc()
    if checkpoint is not None and not _apply_guarded(doc, checkpoint, check=False):
        out.append(-1)
        base = None
        doc = Doc()
    applied: list[bytes] = []
    positions: list[int] = []
    for index, update in enumerate(updates):
        if _apply_guarded(doc, update):
            applied.append(update)
            positions.append(index)
            continue
        out.append(index)
        doc = _rebuild(base, applied)  # the failed apply may have changed it halfway
    if (base is None and not applied) or _readable(doc):
        return doc  # (a new document with nothing applied is readable: a new room's load)
    # Every apply succeeded, yet the document panics when read: one of the updates left
    # it poisoned. Poison lasts, so the first prefix that reads badly ends with the culprit:
    # find it by bisection, leave it out, and go on with the rest.
    doc = _bisect_poison(base, applied, positions, out)
    out.sort()
    return doc


def well_formed(update: bytes) -> bool:
    """Whether a stored update row passes the validator's encoding check: rows stored
    before validation existed (or loaded from a dump) reach yrs only if so, wherever they
    are replayed, since some malformed ones crash yrs outright."""
    try:
        check_update(update)
    except ProtocolError:
        return False
    return True


def _apply_guarded(doc: Doc[Any], update: bytes, check: bool = True) -> bool:
    # A checkpoint is yrs's own encoding of a document: not checked (it would be the whole
    # document again on every load).
    if check and not well_formed(update):
        return False
    try:
        doc.apply_update(update)
    except ValueError:  # refused before it touched the document
        return False
    except BaseException as exc:
        if is_panic(exc):
            return False
        raise
    return True


def _readable(doc: Doc[Any]) -> bool:
    try:
        doc.get_state()
        doc.get_update()
    except BaseException as exc:
        if is_panic(exc):
            return False
        raise
    return True


def _rebuild(base: bytes | None, updates: list[bytes]) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if base is not None:
        doc.apply_update(base)
    for update in updates:
        doc.apply_update(update)
    return doc


def _bisect_poison(
    base: bytes | None, updates: list[bytes], positions: list[int], out: list[int]
) -> Doc[Any]:
    while True:
        if _readable(doc := _rebuild(base, updates)):
            return doc
        if not _readable(_rebuild(base, [])):  # the checkpoint itself reads badly
            out.append(-1)
            base = None
            continue
        low, high = 1, len(updates)  # the shortest poisoned prefix is in [low, high]
        while low < high:
            middle = (low + high) // 2
            if _readable(_rebuild(base, updates[:middle])):
                low = middle + 1
            else:
                high = middle
        out.append(positions[low - 1])
        del updates[low - 1]
        del positions[low - 1]


# -- times -------------------------------------------------------------------------------


def parse_time(value: str) -> int:
    """Parse an ISO-8601 time (naive means UTC) or epoch milliseconds.

    Raises:
        BadRequest: neither.
    """
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"bad time {value!r}: expected ISO-8601 such as 2026-11-22T15:04:05Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp() * 1000)


# -- a version's content -----------------------------------------------------------------

_XML = (XmlElement, XmlText, XmlFragment)


def root_kinds(doc: Doc[Any]) -> dict[str, str]:
    """Work out the type of every root of a document rebuilt from updates.

    A fresh document does not know its roots' types (the encoding only says which items
    belong to which root name), so each root is read as each type in turn, from the
    cheapest test: map entries; text characters, embeds or XML nodes; array elements. A
    root whose content was all deleted leaves no trace of its type: it is ``"empty"``.
    A map or array root holding text where yrs expects values is ``"unreadable"``: reading
    it would loop forever inside yrs (``collab.sync.tree``), so nothing reads it.

    Returns:
        root name -> ``"text"``, ``"map"``, ``"array"``, ``"xml"``, ``"empty"`` or
        ``"unreadable"``.
    """
    kinds: dict[str, str] = {}
    unreadable: set[str] | None = None  # walked only for documents with maps or arrays
    for name in sorted(doc.keys()):
        if len(doc.get(name, type=Map)) > 0:
            if unreadable is None:
                unreadable = unreadable_roots(doc.get_update())
            kinds[name] = "unreadable" if name in unreadable else "map"
            continue
        chunks = doc.get(name, type=Text).diff()
        if any(isinstance(content, _XML) for content, _ in chunks):
            kinds[name] = "xml"
        elif any(not isinstance(content, Text | Map | Array) for content, _ in chunks):
            kinds[name] = "text"
        elif len(doc.get(name, type=Array)) > 0:
            if unreadable is None:
                unreadable = unreadable_roots(doc.get_update())
            kinds[name] = "unreadable" if name in unreadable else "array"
        else:
            # collab's own tools use the Y.Text "content": an empty one is still text.
            kinds[name] = "text" if name == TEXT_ROOT else "empty"
    return kinds


def root_value(doc: Doc[Any], name: str, kind: str) -> Any:
    """The JSON value of one root: text and XML as strings (a fragment's XML escaped,
    ``richtext.xml_string``), maps and arrays as JSON, and
    ``None`` for an empty or unreadable root."""
    if kind == "text":
        return str(doc.get(name, type=Text))
    if kind == "xml":
        if xml_kind(doc.get(name, type=Text)) == XML_FRAGMENT:
            return xml_string(tree_of(doc.get(name, type=XmlFragment)))
        return str(doc.get(name, type=XmlFragment))  # Lexical's XmlText root, as yrs prints it
    if kind == "map":
        return _json_value(doc.get(name, type=Map))
    if kind == "array":
        return _json_value(doc.get(name, type=Array))
    return None


def content_of(doc: Doc[Any]) -> dict[str, Any]:
    """Every root of a document as JSON: ``{root name: value}`` (see ``root_value``)."""
    return {name: root_value(doc, name, kind) for name, kind in root_kinds(doc).items()}


def _json_value(value: Any) -> Any:
    # pycrdt gives numbers JS semantics (5 comes back as 5.0); JSON readers expect 5.
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, _XML):
        return str(value)
    if isinstance(value, Map):
        return {key: _json_value(value[key]) for key in value.keys()}
    if isinstance(value, Array):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, bytes):
        return list(value)
    return value


def json_text(value: Any) -> str:
    """A root value as the text ``format=text`` returns: strings as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- the timeline ------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One line of the timeline: consecutive updates by one author, close in time."""

    first_seq: int
    last_seq: int
    start_ms: int
    end_ms: int
    authors: list[str]
    updates: int = 0
    inserted: int = 0
    deleted: int = 0
    names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.last_seq,
            "first_seq": self.first_seq,
            "start": format_ms(self.start_ms),
            "end": format_ms(self.end_ms),
            "authors": self.authors,
            "updates": self.updates,
            "inserted": self.inserted,
            "deleted": self.deleted,
            "named": self.names,
        }


class Timeline:
    """Folds rows, newest first, into at most ``limit`` timeline entries.

    A row joins the entry being built when it has the same author, is at most ``gap_ms``
    older than it, the entry holds fewer than ``MAX_GROUP`` updates, and the row's seq is
    not a named version (a named version always ends an entry, so it can be picked). With
    ``raw``, every row is an entry of its own.
    """

    def __init__(
        self,
        *,
        gap_ms: int,
        limit: int,
        named: dict[int, list[str]] | None = None,
        raw: bool = False,
    ) -> None:
        self.gap_ms = gap_ms
        self.limit = limit
        self.named = named or {}
        self.raw = raw
        self.entries: list[Entry] = []

    def add(self, row: Row) -> bool:
        """Fold in the next older row.

        Returns:
            ``False`` when the row would start entry ``limit + 1``: the page is full, every
            entry on it is complete, and the row was not used.
        """
        return self._add(
            row.seq, row.first_seq, row.created_ms, row.who, row.inserted, row.deleted, row.data
        )

    def fold(self, rows: Sequence[TimelineRow], older: int) -> bool:
        """Fold in ``TimelineRow`` tuples, newest first; ``older`` is the seq of the row
        just before the last one (0: none). A row's stored counts are used as they are;
        a row without them (``None``: stored before migration 0007, or loaded from a dump)
        is measured from its ``data``.

        Returns:
            ``False`` as soon as the page is full (see ``add``).
        """
        for k, (seq, created_ms, author, connection_id, inserted, deleted, data) in enumerate(
            rows
        ):
            first = (rows[k + 1][0] if k + 1 < len(rows) else older) + 1
            who = identity(author, connection_id)
            if not self._add(seq, first, created_ms, who, inserted, deleted, data):
                return False
        return True

    def _add(
        self,
        seq: int,
        first_seq: int,
        created_ms: int,
        who: str,
        inserted: int | None,
        deleted: int | None,
        data: bytes | None,
    ) -> bool:
        current = self.entries[-1] if self.entries else None
        if (
            current is not None
            and not self.raw
            and current.authors[0] == who
            and current.start_ms - created_ms <= self.gap_ms
            and current.updates < MAX_GROUP
            and seq not in self.named
        ):
            current.first_seq = first_seq
            current.start_ms = min(current.start_ms, created_ms)
        else:
            if len(self.entries) == self.limit:
                return False
            current = Entry(first_seq, seq, created_ms, created_ms, [who])
            current.names = list(self.named.get(seq, []))
            self.entries.append(current)
        if inserted is None or deleted is None:
            # timeline_rows fetches the bytes of exactly these rows.
            assert data is not None, "a row without counts comes with its bytes"
            stats = measure(data)
            inserted, deleted = stats.inserted, stats.deleted
        current.updates += seq - first_seq + 1
        current.inserted += inserted
        current.deleted += deleted
        return True


def spaced(first: int, last: int, count: int) -> list[int]:
    """``count`` seqs spread evenly over ``first..last`` (both included), ascending."""
    if count <= 1 or last <= first:
        return [last]
    step = (last - first) / (count - 1)
    return sorted({first + round(i * step) for i in range(count)})
