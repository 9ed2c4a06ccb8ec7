"""Who changed what in a rich-text root: the engine of diff and blame for XML fragments.

PURE: takes a ``pycrdt.Doc`` at some version and the *steps* that follow it (each step the
updates one author made in a row, ``attribution.Step``) and returns the union document of
both versions as ProseMirror JSON, every change marked with its step. Never runs SQL,
never awaits.

As for text (``attribution.py``), the CRDT says what happened, not a tree diff: each step
is applied in its own transaction and the fragment's deep observer reports its net change,
one event per changed node, which is applied to a mirror of the tree in which nothing is
ever removed, only marked:

- a node's children delta inserts nodes (marked added by the step) and deletes them
  (marked removed, with everything in them; a node the range itself added and then
  removed leaves no trace);
- a text delta inserts and deletes runs of characters, and a retain with attributes is a
  formatting change (bold added, a link removed) on the characters it covers;
- an element's attribute changes (a heading's level) are recorded with the values before.

Event paths are indices among the *current* children, so parents are brought up to date
before their descendants (events sorted by path length) and removed children are skipped
when a path is followed. Positions in a text delta count UTF-8 bytes, as pycrdt does.

The marks follow y-prosemirror's ``ychange``: text carries
``{"type": "ychange", "attrs": {"type": "added" | "removed" | "formatted", "user", "seqs"}}``
and a node ``attrs.ychange`` of the same shape (``"attributes"`` for an attribute change,
with ``before``; a formatting change carries the marks ``before``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.history.attribution import Step
from collab.history.replay import well_formed
from collab.history.richtext import attributes_of, attrs_json, marks_json, plain

__all__ = ["RichAttribution"]

_EQUAL, _ADDED, _REMOVED = "equal", "added", "removed"
_PER_TRANSACTION = 4096  # as attribution.py: big transactions get slow per update


def _units(content: Any) -> int:
    if not isinstance(content, str):
        return 1
    return len(content) if content.isascii() else len(content.encode())


class _Run:
    __slots__ = ("attrs", "content", "formatted", "status", "step", "units")

    def __init__(
        self, content: Any, attrs: dict[str, Any] | None, status: str, step: Step | None
    ) -> None:
        self.content = content
        self.units = _units(content)
        self.attrs = dict(attrs) if attrs else None
        self.status = status
        self.step = step
        self.formatted: tuple[Step, dict[str, Any] | None] | None = None

    def split(self, at: int) -> tuple[_Run, _Run]:
        """Cut after ``at`` units (never inside a character: Yjs positions never are)."""
        text = self.content
        assert isinstance(text, str)
        if text.isascii():
            head, tail = text[:at], text[at:]
        else:
            raw = text.encode()
            head, tail = raw[:at].decode(), raw[at:].decode()
        runs = []
        for part in (head, tail):
            run = _Run(part, self.attrs, self.status, self.step)
            run.formatted = self.formatted
            runs.append(run)
        return runs[0], runs[1]


class _Node:
    __slots__ = ("attrs", "changed", "children", "removed", "runs", "status", "step", "tag")

    def __init__(
        self, tag: str | None, attrs: dict[str, Any], status: str, step: Step | None
    ) -> None:
        self.tag = tag  # None: an XmlText, whose content is runs
        self.attrs = attrs
        self.children: list[_Node] = []
        self.removed = 0  # how many of the children are removed: none, paths index them
        self.runs: list[_Run] = []
        self.status = status
        self.step = step
        self.changed: tuple[Step, dict[str, Any]] | None = None


def _mirror(shared: Any, status: str, step: Step | None) -> _Node:
    if isinstance(shared, XmlText):
        node = _Node(None, {}, status, step)
        node.runs = [_Run(c, a, status, step) for c, a in shared.diff() if _units(c)]
        return node
    tag = str(shared.tag) if isinstance(shared, XmlElement) else "doc"
    attrs = attributes_of(shared) if tag != "doc" else {}
    node = _Node(tag, attrs, status, step)
    node.children = [_mirror(child, status, step) for child in shared.children]
    return node


def _remove(node: _Node, step: Step) -> _Node | None:
    """Mark ``node`` and what it holds removed by ``step``; ``None`` if it was added in the
    range (no trace)."""
    if node.status == _ADDED:
        return None
    if node.status == _EQUAL:
        node.status, node.step = _REMOVED, step
        if node.changed is not None:  # removed content shows as the older version had it
            node.attrs, node.changed = node.changed[1], None
    node.children = [kept for child in node.children if (kept := _remove(child, step))]
    runs = []
    for run in node.runs:
        if run.status == _ADDED:
            continue
        if run.status == _EQUAL:
            _delete(run, step)
        runs.append(run)
    node.runs = runs
    return node


def _delete(run: _Run, step: Step) -> None:
    """Mark a kept run deleted; it shows with the formatting the older version gave it."""
    run.status, run.step = _REMOVED, step
    if run.formatted is not None:
        run.attrs, run.formatted = run.formatted[1], None


def _format(run: _Run, attributes: dict[str, Any], step: Step) -> None:
    before = run.attrs
    after = dict(before or {})
    for key, value in attributes.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    if after == (before or {}):
        return  # yrs reports a removal over text that never had the attribute too
    run.attrs = after or None
    if run.status == _EQUAL:
        if run.formatted is None:
            run.formatted = (step, before)
        elif (run.formatted[1] or None) == run.attrs:
            run.formatted = None  # formatted back as it was


class RichAttribution:
    """The XML fragment ``root`` of a document from a base version on, every change
    attributed. ``doc`` is changed in place; call ``close`` when done."""

    def __init__(self, doc: Doc[Any], root: str) -> None:
        self.doc = doc
        self.fragment = doc.get(root, type=XmlFragment)
        self.tree = _mirror(self.fragment, _EQUAL, None)
        self._events: list[Any] = []
        self._subscription = self.fragment.observe_deep(self._events.extend)

    def close(self) -> None:
        """Stop observing the document."""
        self.fragment.unobserve(self._subscription)

    def apply(self, steps: Sequence[Step]) -> None:
        """Apply ``steps`` in order, attributing each one's net change to it."""
        for step in steps:
            for start in range(0, len(step.updates), _PER_TRANSACTION):
                with self.doc.transaction():
                    for update in step.updates[start : start + _PER_TRANSACTION]:
                        if well_formed(update):  # as replay: a malformed row is left out
                            self.doc.apply_update(update)
                events = sorted(self._events, key=lambda event: len(event.path))
                self._events.clear()
                for event in events:
                    self._event(event, step)

    def _event(self, event: Any, step: Step) -> None:
        node: _Node | None = self.tree
        for index in event.path:
            if node is None:
                break
            visible = node.children
            if node.removed:
                visible = [c for c in visible if c.status != _REMOVED]
            node = visible[index] if isinstance(index, int) and index < len(visible) else None
        if node is None:
            return  # a path the mirror cannot follow: nothing to attribute it to
        if isinstance(event.target, XmlText):
            if node.tag is None:
                self._text(node, event.delta, step)
            return
        if event.delta:
            self._children(node, event.delta, step)
        for key, change in (event.keys or {}).items():
            if node.status == _EQUAL and node.changed is None:
                node.changed = (step, dict(node.attrs))
            if change.get("action") == "delete":
                node.attrs.pop(key, None)
            else:
                node.attrs[key] = change.get("newValue")
        if node.changed is not None and node.changed[1] == node.attrs:
            node.changed = None  # changed back as it was

    def _children(self, node: _Node, delta: list[dict[str, Any]], step: Step) -> None:
        out: list[_Node] = []
        rest, i = node.children, 0
        for op in delta:
            if "insert" in op:
                while i < len(rest) and rest[i].status == _REMOVED:
                    out.append(rest[i])  # "-old +new": deletions stay before the insertion
                    i += 1
                out.extend(_mirror(item, _ADDED, step) for item in op["insert"])
                continue
            count = int(op.get("retain", op.get("delete", 0)))
            while count > 0 and i < len(rest):
                child = rest[i]
                i += 1
                if child.status == _REMOVED:
                    out.append(child)
                    continue
                count -= 1
                if "delete" in op:
                    kept = _remove(child, step)
                    if kept is not None:
                        out.append(kept)
                else:
                    out.append(child)
        out.extend(rest[i:])
        node.children = out
        node.removed = sum(1 for child in out if child.status == _REMOVED)

    def _text(self, node: _Node, delta: list[dict[str, Any]], step: Step) -> None:
        out: list[_Run] = []
        rest, i = node.runs, 0
        for op in delta:
            if "insert" in op:
                while i < len(rest) and rest[i].status == _REMOVED:
                    out.append(rest[i])
                    i += 1
                out.append(_Run(op["insert"], op.get("attributes"), _ADDED, step))
                continue
            deleting = "delete" in op
            units = int(op["delete"] if deleting else op.get("retain", 0))
            attributes = op.get("attributes")
            while units > 0 and i < len(rest):
                run = rest[i]
                if run.status == _REMOVED:
                    out.append(run)
                    i += 1
                    continue
                if run.units > units:
                    head, rest[i] = run.split(units)
                    run = head
                else:
                    i += 1
                units -= run.units
                if deleting:
                    if run.status == _EQUAL:
                        _delete(run, step)
                        out.append(run)
                    # inserted in the range and deleted again: no trace
                    continue
                if attributes:
                    _format(run, attributes, step)
                out.append(run)
        out.extend(rest[i:])
        node.runs = out

    # -- the union document --

    def document(self) -> dict[str, Any]:
        """The union of both versions as ProseMirror JSON, changes marked."""
        return {"type": "doc", "content": self._content(self.tree)}

    def _content(self, node: _Node) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for child in node.children:
            if child.tag is None:
                out.extend(self._texts(child.runs))
            else:
                out.append(self._element(child, node))
        return out

    def _element(self, node: _Node, parent: _Node) -> dict[str, Any]:
        assert node.tag is not None
        out: dict[str, Any] = {"type": node.tag}
        attrs = attrs_json(node.attrs)
        if node.status != _EQUAL and node.step is not None:
            attrs["ychange"] = _change(node.status, node.step)
        elif node.changed is not None:
            step, before = node.changed
            attrs["ychange"] = {**_change("attributes", step), "before": attrs_json(before)}
        if attrs:
            out["attrs"] = attrs
        content = self._content(node)
        if content:
            out["content"] = content
        return out

    @staticmethod
    def _texts(runs: list[_Run]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last: _Run | None = None
        for run in runs:
            if not run.units:
                continue
            if last is not None and _same(last, run):
                out[-1]["text"] += run.content
                continue
            last = run if isinstance(run.content, str) else None
            if isinstance(run.content, str):
                node: dict[str, Any] = {"type": "text", "text": run.content}
            else:
                node = {"type": "embed", "attrs": {"value": plain(run.content)}}
            marks = marks_json(run.attrs)
            if run.status != _EQUAL and run.step is not None:
                marks.append({"type": "ychange", "attrs": _change(run.status, run.step)})
            elif run.formatted is not None:
                step, before = run.formatted
                change = {**_change("formatted", step), "before": marks_json(before)}
                marks.append({"type": "ychange", "attrs": change})
            if marks:
                node["marks"] = marks
            out.append(node)
        return out

    def totals(self) -> dict[str, Any]:
        """Characters inserted, deleted and reformatted (code points), and the authors."""
        counts = {_ADDED: 0, _REMOVED: 0, "formatted": 0}
        authors: set[str] = set()

        def walk(node: _Node) -> None:
            if node.step is not None:
                authors.add(node.step.who)
            if node.changed is not None:
                authors.add(node.changed[0].who)
            for run in node.runs:
                size = len(run.content) if isinstance(run.content, str) else 1
                if run.step is not None and run.status != _EQUAL:
                    counts[run.status] += size
                    authors.add(run.step.who)
                elif run.formatted is not None:
                    counts["formatted"] += size
                    authors.add(run.formatted[0].who)
            for child in node.children:
                walk(child)

        walk(self.tree)
        return {
            "inserted": counts[_ADDED],
            "deleted": counts[_REMOVED],
            "formatted": counts["formatted"],
            "authors": sorted(authors),
        }


def _same(a: _Run, b: _Run) -> bool:
    """Whether two text runs show as one text node (steps compared by identity: a step's
    equality would compare its updates)."""
    return (
        isinstance(b.content, str)
        and a.status == b.status
        and a.step is b.step
        and a.formatted is b.formatted
        and a.attrs == b.attrs
    )


def _change(kind: str, step: Step) -> dict[str, Any]:
    return {"type": kind, "user": step.who, "seqs": [step.first_seq, step.last_seq]}
