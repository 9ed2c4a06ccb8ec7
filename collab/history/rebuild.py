"""Rebuilding versions and reading them: the pycrdt work of one history request.

PURE: no I/O; pycrdt, ``collab.clock`` and the other history modules only. ``service``
fetches what a request needs from the store, then runs one of these in a worker thread,
where the documents they build stay: rebuild a version from its checkpoint and updates,
read its content or one root as text, work out who wrote what between two versions (with
``attribution``), the change that restores a version (with ``restore``), or a slider's
stops. A ``Source`` is anything shaped like the store's ``VersionSource``; this module
never imports the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pycrdt import Doc, Text, XmlFragment

from collab.clock import format_ms
from collab.history.attribution import Attribution, Span, Step
from collab.history.markup import html_of
from collab.history.replay import (
    BadRequest,
    NotFound,
    Row,
    content_of,
    json_text,
    replay,
    root_kinds,
    root_value,
    well_formed,
)
from collab.history.restore import restore_update
from collab.history.richdiff import RichAttribution
from collab.history.richtext import (
    XML_FRAGMENT,
    XML_TEXT,
    lexical_json,
    prosemirror_json,
    tree_of,
)
from collab.history.shape import kinds_of, pick_root

__all__ = [
    "Source",
    "Steps",
    "attribute",
    "content_json",
    "rebuild",
    "restore_change",
    "pick_either",
    "root_of",
    "root_rich",
    "root_text",
    "sample",
    "span_json",
    "spans_json",
    "state_of",
]


class Source(Protocol):
    """What rebuilding version ``seq`` needs (the store's ``VersionSource``)."""

    @property
    def seq(self) -> int: ...
    @property
    def created_ms(self) -> int: ...
    @property
    def checkpoint(self) -> bytes | None: ...
    @property
    def updates(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Steps:
    """Either one step whose change is "from the base to the target" (one author), or
    the rows to split into steps by author."""

    single: Step | None
    rows: list[Row]


def rebuild(source: Source) -> Doc[Any]:
    """The document as of ``source.seq``: its checkpoint with the updates after it."""
    return replay(source.checkpoint, source.updates)


def state_of(source: Source) -> bytes:
    """Version ``source.seq`` as one Yjs update."""
    return rebuild(source).get_update()


def content_json(source: Source) -> dict[str, Any]:
    """Every root of version ``source.seq``, JSON-ready."""
    return content_of(rebuild(source))


def root_text(source: Source, root: str | None) -> str:
    """Root ``root`` (default: the main root) of version ``source.seq`` as text: JSON for
    maps and arrays, escaped XML for rich text.

    Raises:
        NotFound: the version has no such root (``content`` reads as empty).
    """
    doc = rebuild(source)
    name, kind = pick_root(doc, root, f"version {source.seq}")
    if kind in (XML_FRAGMENT, XML_TEXT):
        kind = "xml"
    return json_text(root_value(doc, name, kind)) if name in doc.keys() else ""


def root_rich(source: Source, root: str | None, fmt: str) -> Any:
    """A rich-text root of version ``source.seq`` as ProseMirror JSON (``fmt`` is
    ``"prosemirror"``) or HTML (``"html"``); a root whose content was all deleted reads as
    the empty document.

    Raises:
        NotFound: the version has no such root.
        BadRequest: the root is not rich text.
    """
    doc = rebuild(source)
    name, kind = pick_root(doc, root, f"version {source.seq}")
    if kind == XML_FRAGMENT:
        document = prosemirror_json(tree_of(doc.get(name, type=XmlFragment)))
    elif kind == XML_TEXT:
        document = lexical_json(doc.get(name, type=Text))
    elif kind == "empty":
        document = {"type": "doc", "content": []}
    else:
        raise BadRequest(f"format={fmt} reads rich-text (XML) roots; {name!r} is {kind}")
    return document if fmt == "prosemirror" else html_of(document)


def _steps_by_author(rows: Sequence[Row]) -> list[Step]:
    steps: list[Step] = []
    start = 0
    for k in range(1, len(rows) + 1):
        if k == len(rows) or rows[k].who != rows[start].who:
            run = rows[start:k]
            steps.append(
                Step(
                    run[0].who,
                    run[0].first_seq,
                    run[-1].seq,
                    run[0].created_ms,
                    run[-1].created_ms,
                    [row.data for row in run],
                )
            )
            start = k
    return steps


def pick_either(target: Doc[Any], base: Doc[Any], root: str | None, seq: int) -> tuple[str, str]:
    """The root a diff reads, and its kind: as ``pick_root`` on the newer version, or on the
    older one when only it has the root (all of it deleted since)."""
    try:
        return pick_root(target, root, f"version {seq}")
    except NotFound:
        if root is None or root not in base.keys():
            raise
        return pick_root(base, root, f"version {seq}")


def attribute(base: Source, target: Source, steps: Steps, root: str | None) -> dict[str, Any]:
    """Who inserted and deleted what in root ``root`` (default: the main root) from
    ``base`` to ``target``: for a text root its spans (``spans_json``), for a rich-text
    root the union document (``richdiff``) as ``doc``, with its totals; always ``root``.

    Raises:
        NotFound: neither version has the root.
        BadRequest: the root is neither text nor an XML fragment.
    """
    doc = rebuild(base)
    final = rebuild(target)
    name, kind = pick_either(final, doc, root, target.seq)
    if kind == "empty":  # a root all deleted in both: read it as the text it likely was
        kind = XML_FRAGMENT if kinds_of(doc).get(name) == XML_FRAGMENT else "text"
    if kind not in ("text", XML_FRAGMENT):
        raise BadRequest(f"diff and blame read text and XML fragment roots; {name!r} is {kind}")
    if steps.single is not None:
        change = final.get_update(doc.get_state())
        step_list = [dataclasses.replace(steps.single, updates=[change])]
    else:
        step_list = _steps_by_author(steps.rows)
    if kind == XML_FRAGMENT:
        rich = RichAttribution(doc, name)
        try:
            rich.apply(step_list)
        finally:
            rich.close()
        return {"root": name, **rich.totals(), "doc": rich.document()}
    attribution = Attribution(doc, name)
    try:
        attribution.apply(step_list)
    finally:
        attribution.close()
    return {"root": name, **spans_json(attribution.spans())}


def span_json(span: Span) -> dict[str, Any]:
    """One attributed span as the API shows it."""
    out: dict[str, Any] = {"op": span.op, "text": span.text}
    if span.step is not None:
        out.update(
            author=span.step.who,
            first_seq=span.step.first_seq,
            last_seq=span.step.last_seq,
            start=format_ms(span.step.start_ms),
            end=format_ms(span.step.end_ms),
        )
    return out


def spans_json(spans: Sequence[Span]) -> dict[str, Any]:
    """A diff as the API shows it: totals, authors and every span."""
    inserted = sum(len(s.text) for s in spans if s.op == "insert")
    deleted = sum(len(s.text) for s in spans if s.op == "delete")
    authors = sorted({s.step.who for s in spans if s.step is not None})
    return {
        "inserted": inserted,
        "deleted": deleted,
        "authors": authors,
        "spans": [span_json(span) for span in spans],
    }


def restore_change(target: Source, latest: Source | None, current: bytes | None) -> bytes:
    """The update that makes ``target`` the content of ``current`` (or of ``latest``)."""
    now = rebuild(latest) if latest is not None else replay(current, [])
    return restore_update(now, rebuild(target))


def root_of(source: Source, root: str | None) -> str:
    """The root of version ``source.seq`` a request names (default: the main root).

    Raises:
        NotFound: the version has no such root.
    """
    return pick_root(rebuild(source), root, f"version {source.seq}")[0]


def sample(
    plan: Sequence[tuple[Source | None, list[Row], int]], root: str
) -> list[tuple[int, Any]]:
    """The value of ``root`` at each stop of ``plan``: a rebuilt source, or rows applied
    to the previous stop's document."""
    stops: list[tuple[int, Any]] = []
    doc: Doc[Any] | None = None
    for source, rows, seq in plan:
        if source is not None:
            doc = rebuild(source)
        assert doc is not None
        for row in rows:
            if well_formed(row.data):  # as replay: a malformed row is left out
                doc.apply_update(row.data)
        if stops and stops[-1][0] == seq:
            continue
        kind = root_kinds(doc).get(root)
        stops.append((seq, None if kind is None else root_value(doc, root, kind)))
    return stops
