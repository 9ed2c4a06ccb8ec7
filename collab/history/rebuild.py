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

from pycrdt import Doc

from collab.clock import format_ms
from collab.history.attribution import Attribution, Span, Step
from collab.history.replay import (
    TEXT_ROOT,
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

__all__ = [
    "Source",
    "Steps",
    "attribute",
    "content_json",
    "rebuild",
    "restore_change",
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


def root_text(source: Source, root: str) -> str:
    """Root ``root`` of version ``source.seq`` as text (JSON for maps and arrays).

    Raises:
        NotFound: the version has no such root (the default text root reads as empty).
    """
    doc = rebuild(source)
    kinds = root_kinds(doc)
    if root not in kinds:
        if root == TEXT_ROOT:
            return ""
        raise NotFound(f"version {source.seq} has no root named {root!r}")
    return json_text(root_value(doc, root, kinds[root]))


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


def attribute(base: Source, target: Source, steps: Steps, root: str) -> list[Span]:
    """Who inserted and deleted each span of text root ``root`` from ``base`` to ``target``.

    Raises:
        NotFound: neither version has the root.
        BadRequest: the root is not text.
    """
    doc = rebuild(base)
    if steps.single is not None:
        final = rebuild(target)
        _check_text_root(final, doc, root, target.seq)
        change = final.get_update(doc.get_state())
        step_list = [dataclasses.replace(steps.single, updates=[change])]
    else:
        step_list = _steps_by_author(steps.rows)
    attribution = Attribution(doc, root)
    try:
        attribution.apply(step_list)
    finally:
        attribution.close()
    if steps.single is None:
        _check_text_root(doc, doc, root, target.seq)
    return attribution.spans()


def _check_text_root(target: Doc[Any], base: Doc[Any], root: str, seq: int) -> None:
    kind = root_kinds(target).get(root) or root_kinds(base).get(root)
    if kind is None and root != TEXT_ROOT:
        raise NotFound(f"version {seq} has no root named {root!r}")
    if kind not in (None, "text", "empty"):
        raise BadRequest(f"diff and blame read text roots; {root!r} is {kind}")


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


def sample(
    plan: Sequence[tuple[Source | None, list[Row], int]], root: str
) -> list[tuple[int, Any]]:
    """The text of ``root`` at each stop of ``plan``: a rebuilt source, or rows applied to
    the previous stop's document."""
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
