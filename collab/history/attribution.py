"""Who wrote and who deleted each part of a text: the engine of diff and blame.

PURE: takes a ``pycrdt.Doc`` at some version and the *steps* that follow it (each step is
the updates one author made in a row) and returns spans. It never runs SQL and never awaits.

Each step is applied in its own transaction, and the root's text observer reports the net
change of the whole step as one delta (insertions it also deleted never show). That delta
is applied to a list of segments: text kept from the base version, text a step inserted,
text of the base a step deleted. Yjs reports positions in its own units (pycrdt counts
UTF-8 bytes, and an embed as one), so segments keep their length in those units.

Why steps rather than a text diff of the two versions: the CRDT knows what was really
inserted and deleted (a text diff would match a deleted "the" with a typed one), and one
step costs one observer call however many updates it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Text

from collab.history.replay import well_formed

__all__ = ["Attribution", "Span", "Step"]

_EQUAL, _INSERT, _DELETE = "equal", "insert", "delete"
_EMBED = "\ufffc"  # OBJECT REPLACEMENT CHARACTER stands for an embed in span text
# Applying a very large number of updates in one pycrdt transaction gets slower per update;
# a few thousand keeps every transaction fast and the deltas few.
_PER_TRANSACTION = 4096


@dataclass(frozen=True, slots=True)
class Step:
    """Consecutive updates by one author, applied and attributed as one change."""

    who: str
    first_seq: int
    last_seq: int
    start_ms: int
    end_ms: int
    updates: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text with what happened to it; ``step`` is ``None`` for kept text."""

    op: str
    text: str
    step: Step | None


class _Segment:
    __slots__ = ("kind", "step", "text", "units")

    def __init__(self, kind: str, text: str, units: int, step: Step | None) -> None:
        self.kind = kind
        self.text = text
        self.units = units
        self.step = step

    def split(self, at: int) -> tuple[_Segment, _Segment]:
        """Cut after ``at`` units (never inside a character: Yjs positions never are)."""
        if self.text.isascii():
            head, tail = self.text[:at], self.text[at:]
        else:
            raw = self.text.encode()
            head, tail = raw[:at].decode(), raw[at:].decode()
        return (
            _Segment(self.kind, head, at, self.step),
            _Segment(self.kind, tail, self.units - at, self.step),
        )


def _units(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class Attribution:
    """The text of one root from a base version on, with every change attributed.

    Args:
        doc: the document at the base version; it is changed in place.
        root: the name of a Y.Text root.
    """

    def __init__(self, doc: Doc[Any], root: str) -> None:
        self.doc = doc
        self.text = doc.get(root, type=Text)
        self._segments: list[_Segment] = []
        for content, _attrs in self.text.diff():
            if isinstance(content, str):
                self._segments.append(_Segment(_EQUAL, content, _units(content), None))
            else:
                self._segments.append(_Segment(_EQUAL, _EMBED, 1, None))
        self._deltas: list[list[dict[str, Any]]] = []
        self._subscription = self.text.observe(lambda event: self._deltas.append(event.delta))

    def apply(self, steps: Sequence[Step]) -> None:
        """Apply ``steps`` in order, attributing each one's net change to it."""
        for step in steps:
            for start in range(0, len(step.updates), _PER_TRANSACTION):
                with self.doc.transaction():
                    for update in step.updates[start : start + _PER_TRANSACTION]:
                        if well_formed(update):  # as replay: a malformed row is left out
                            self.doc.apply_update(update)
                for delta in self._deltas:
                    self._apply_delta(delta, step)
                self._deltas.clear()

    def close(self) -> None:
        """Stop observing the document."""
        self.text.unobserve(self._subscription)

    def spans(self) -> list[Span]:
        """The text as spans, adjacent segments of the same kind and step merged."""
        spans: list[Span] = []
        kind: str | None = None
        step: Step | None = None
        parts: list[str] = []
        for segment in self._segments:
            if segment.units == 0:
                continue
            if segment.kind != kind or segment.step is not step:
                if kind is not None:
                    spans.append(Span(kind, "".join(parts), step))
                kind, step, parts = segment.kind, segment.step, []
            parts.append(segment.text)
        if kind is not None:
            spans.append(Span(kind, "".join(parts), step))
        return spans

    def _apply_delta(self, delta: list[dict[str, Any]], step: Step) -> None:
        out: list[_Segment] = []
        rest = self._segments
        i = 0  # next segment of rest to consume
        for op in delta:
            if "retain" in op:
                i = self._walk(rest, i, int(op["retain"]), out, None)
            elif "delete" in op:
                i = self._walk(rest, i, int(op["delete"]), out, step)
            elif "insert" in op:
                # Deletions just before the cursor stay before the insertion ("-old +new").
                while i < len(rest) and rest[i].kind == _DELETE:
                    out.append(rest[i])
                    i += 1
                content = op["insert"]
                if isinstance(content, str):
                    out.append(_Segment(_INSERT, content, _units(content), step))
                else:
                    out.append(_Segment(_INSERT, _EMBED, 1, step))
        out.extend(rest[i:])
        self._segments = out

    @staticmethod
    def _walk(
        rest: list[_Segment], i: int, units: int, out: list[_Segment], deleter: Step | None
    ) -> int:
        """Move ``units`` visible units from ``rest[i:]`` to ``out``: kept as they are
        (retain) or deleted by ``deleter``. Returns the new ``i``."""
        while units > 0 and i < len(rest):
            segment = rest[i]
            if segment.kind == _DELETE:
                out.append(segment)
                i += 1
                continue
            if segment.units > units:
                head, tail = segment.split(units)
                rest[i] = tail
                segment = head
            else:
                i += 1
            units -= segment.units
            if deleter is None:
                out.append(segment)
            elif segment.kind == _EQUAL:
                out.append(_Segment(_DELETE, segment.text, segment.units, deleter))
            # text inserted after the base and deleted again: no trace in the result
        return i
