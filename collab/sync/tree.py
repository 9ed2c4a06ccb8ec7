"""Which shared type each item of an encoded document belongs to, from the bytes alone.

PURE: bytes in, names out. yrs reads text content that sits in an Array (string items with
characters outside the BMP, which only a hostile or broken client puts there: Yjs writes
array elements as ``ContentAny``) by looping forever, holding the GIL: the whole
process stops, and no timeout or exception can help. pycrdt does not say which type an item
belongs to, and the validator cannot know when an update arrives (an item inherits its parent
from its origin, which may be any item of the document). So before collab renders a root as
JSON (``collab.history.replay.root_value`` for maps and arrays), ``unreadable_roots`` walks
the document's own encoding (``doc.get_update()``) and names the roots that hold such
content.

The encoding (yjs ``readClientsStructRefs``, as in ``collab.sync.update``): per client a run of
structs; an item carries its parent (a root name or a type item's id) only when it has no
origins, else it has the parent of its origin (or of its right origin).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from collab.errors import ProtocolError
from collab.sync.varint import Reader

__all__ = ["unreadable_roots"]

_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_XML_ELEMENT, _XML_HOOK = 3, 5
# Type refs under which yrs loops on astral text: Array (checked: a Map reads only its
# keyed entries, XML renders such text as nothing).
_NOT_TEXT = frozenset((0,))

Id = tuple[int, int]


@dataclass(slots=True)
class _Item:
    clock: int
    length: int
    root: str | None  # the parent, when it is a root
    parent: Id | None  # the parent, when it is a type item
    origin: Id | None
    right: Id | None
    type_ref: int | None  # for a shared type's own item
    astral: bool  # string content with characters outside the BMP


def unreadable_roots(state: bytes) -> set[str]:
    """The roots of an encoded document under which yrs would read text as array elements
    (and loop forever).

    Args:
        state: the whole document as one v1 update (``doc.get_update()``).

    Raises:
        ValueError: not a v1 update (it comes from yrs: a bug).
    """
    try:
        items = _items(Reader(state))
    except (IndexError, UnicodeDecodeError, ProtocolError) as exc:
        raise ValueError("not a Yjs v1 update") from exc
    suspects = [(c, item) for c, runs in items.items() for item in runs if item.astral]
    if not suspects:
        return set()  # the common case: a cheap walk, nothing to resolve
    index = {client: [item.clock for item in runs] for client, runs in items.items()}
    # No chain of origins is longer than the document: a bound against cycles in bytes
    # yrs wrote from hostile updates.
    longest = sum(map(len, items.values()))

    def find(ref: Id | None) -> _Item | None:
        if ref is None:
            return None
        runs = items.get(ref[0])
        if not runs:
            return None
        at = bisect_right(index[ref[0]], ref[1]) - 1
        if at < 0:
            return None
        item = runs[at]
        return item if ref[1] < item.clock + item.length else None

    known: dict[int, tuple[str | None, _Item | None]] = {}  # by id() of an item walked

    def container(item: _Item) -> tuple[str | None, _Item | None]:
        # The root or type item ``item`` belongs to: follow origins (iteratively: a typed
        # paragraph is a chain of thousands of origins) until an explicit parent. Every
        # item walked through shares the answer, so each chain is walked once.
        walked: list[_Item] = []
        found: tuple[str | None, _Item | None] = (None, None)
        current: _Item | None = item
        while current is not None and len(walked) <= longest:
            cached = known.get(id(current))
            if cached is not None:
                found = cached
                break
            walked.append(current)
            if current.root is not None:
                found = (current.root, None)
                break
            if current.parent is not None:
                found = (None, find(current.parent))
                break
            current = find(current.origin) or find(current.right)
        for step in walked:
            known[id(step)] = found
        return found

    unreadable: set[str] = set()
    for _, item in suspects:
        root, parent = container(item)
        if parent is None or parent.type_ref not in _NOT_TEXT:
            continue
        while parent is not None:  # up to the root this nested type lives under
            root, parent = container(parent)
        if root is not None:
            unreadable.add(root)
    return unreadable


def _items(r: Reader) -> dict[int, list[_Item]]:
    data = r.data
    out: dict[int, list[_Item]] = {}
    for _ in range(r.uint()):
        structs = r.uint()
        client = r.uint()
        clock = r.uint()
        runs = out.setdefault(client, [])
        for _ in range(structs):
            info = data[r.pos]
            r.pos += 1
            ref = info & 0x1F
            if ref == _GC or ref == _SKIP:
                clock += r.uint()
                continue
            origin = (r.uint(), r.uint()) if info & 0x80 else None
            right = (r.uint(), r.uint()) if info & 0x40 else None
            root: str | None = None
            parent: Id | None = None
            if not info & 0xC0:
                if r.uint() == 1:
                    root = r.string()
                else:
                    parent = (r.uint(), r.uint())
                if info & 0x20:
                    r.skip_bytes()  # map key
            length, type_ref, astral = _content(r, ref)
            runs.append(_Item(clock, length, root, parent, origin, right, type_ref, astral))
            clock += length
    return out


def _content(r: Reader, ref: int) -> tuple[int, int | None, bool]:
    """Read one item's content: its length in clocks, its type ref, whether astral text."""
    if ref == _STRING:
        text = r.string()
        units = len(text.encode("utf-16-le")) // 2
        return units, None, units != len(text)
    if ref == _DELETED:
        return r.uint(), None, False
    if ref == _JSON:
        count = r.uint()
        for _ in range(count):
            r.skip_bytes()
        return count, None, False
    if ref in (_BINARY, _EMBED):
        r.skip_bytes()
        return 1, None, False
    if ref == _FORMAT:
        r.skip_bytes()
        r.skip_bytes()
        return 1, None, False
    if ref == _TYPE:
        type_ref = r.uint()
        if type_ref in (_XML_ELEMENT, _XML_HOOK):
            r.skip_bytes()
        return 1, type_ref, False
    if ref == _ANY:
        count = r.uint()
        for _ in range(count):
            r.skip_any()
        return count, None, False
    if ref == _DOC:
        r.skip_bytes()
        r.skip_any()
        return 1, None, False
    raise ValueError(f"unknown content ref {ref}")
