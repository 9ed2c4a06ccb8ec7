"""Rich-text documents in the shapes editors write them, built with pycrdt.

y-prosemirror (and so Tiptap and BlockNote) stores a ProseMirror document in a
``Y.XmlFragment``: each node an ``XmlElement`` named by its type with its attrs as
attributes (``null`` attrs not stored, numbers as floats), each run of text an ``XmlText``
whose formatting attributes are the marks (``{"bold": {}}``, ``{"link": {"href": ...}}``),
an inline node such as a hard break an ``XmlElement`` between two ``XmlText`` siblings.

A spec is a list of nodes: an element is ``(type, attrs, [children])``, a text is a list
of runs ``[(text, formatting or None), ...]``.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from tests.jsclient import JS_DIR, require_node

__all__ = [
    "Spec",
    "add",
    "el",
    "from_update",
    "node_rich",
    "normalized",
    "random_edit",
    "rich_doc",
]

Spec = list[Any]


def el(tag: str, *children: Any, **attrs: Any) -> tuple[str, dict[str, Any], list[Any]]:
    """An element spec; a ``str`` child is an unformatted text run."""
    kids = [[(child, None)] if isinstance(child, str) else child for child in children]
    return (tag, attrs, kids)


def add(parent: XmlFragment | XmlElement, spec: Spec, at: int | None = None) -> None:
    """Append (or insert at ``at``) the nodes of ``spec`` to ``parent``, integrated."""
    for k, node in enumerate(spec):
        index = len(parent.children) if at is None else at + k
        if isinstance(node, tuple):
            tag, attrs, kids = node
            element = parent.children.insert(index, XmlElement(tag, attrs))
            add(element, kids)
        else:
            text = parent.children.insert(index, XmlText())
            for run, formatting in node:
                text.insert(len(text), run, formatting)


def rich_doc(spec: Spec, root: str = "default") -> Doc[Any]:
    """A new document whose fragment ``root`` holds ``spec``."""
    doc: Doc[Any] = Doc()
    add(doc.get(root, type=XmlFragment), spec)
    return doc


def node_rich(command: dict[str, Any]) -> dict[str, Any]:
    """Run one command of ``tests/js/richtext.mjs`` (the real y-prosemirror and Yjs); skips
    when Node or the packages are missing (see ``tests.jsclient.require_node``)."""
    node = require_node()
    done = subprocess.run(
        [node, str(JS_DIR / "richtext.mjs")],
        input=json.dumps(command).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def from_update(update: str) -> Doc[Any]:
    """A document from a base64 update."""
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(update))
    return doc


def normalized(doc: Any) -> Any:
    """y-prosemirror's JSON as collab writes it: empty attrs left out, marks sorted."""
    if isinstance(doc, list):
        return [normalized(item) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out = {k: normalized(v) for k, v in doc.items() if not (k == "attrs" and v == {})}
    if "marks" in out:
        out["marks"] = sorted(out["marks"], key=lambda mark: mark["type"])
    return out


_FORMATS: list[dict[str, Any]] = [
    {"bold": {}},
    {"italic": {}},
    {"link": {"href": "h"}},
    {"bold": None},
]


def _texts(node: XmlFragment | XmlElement) -> list[XmlText]:
    out: list[XmlText] = []
    for child in node.children:
        if isinstance(child, XmlText):
            out.append(child)
        elif isinstance(child, XmlElement):
            out.extend(_texts(child))
    return out


def _bounds(text: XmlText) -> list[int]:
    out, at = [0], 0
    for content, _ in text.diff():
        for ch in content:
            at += len(ch.encode())
            out.append(at)
    return out


def random_edit(rng: random.Random, fragment: XmlFragment) -> None:
    """One edit an editor could make: add or remove a block, change a heading's level,
    type, delete or (un)format a range, non-ASCII characters included."""
    roll = rng.random()
    texts = _texts(fragment)
    if roll < 0.15 or not texts:
        tag = rng.choice(["paragraph", "heading", "blockquote"])
        attrs: dict[str, Any] = {"level": 1.0} if tag == "heading" else {}  # numbers, as in Yjs
        block = fragment.children.insert(
            rng.randint(0, len(fragment.children)), XmlElement(tag, attrs)
        )
        if tag == "blockquote":
            block = block.children.append(XmlElement("paragraph"))
        block.children.append(XmlText()).insert(0, rng.choice(["ab", "é x", "new"]))
    elif roll < 0.25 and len(fragment.children):
        del fragment.children[rng.randrange(len(fragment.children))]
    elif roll < 0.3:
        headings = [
            c for c in fragment.children if isinstance(c, XmlElement) and c.tag == "heading"
        ]
        if headings:
            rng.choice(headings).attributes["level"] = float(rng.randint(1, 3))
    else:
        text = rng.choice(texts)
        bounds = _bounds(text)
        kind = rng.random()
        if kind < 0.5:
            text.insert(rng.choice(bounds), rng.choice("xyzé"))
        elif len(bounds) > 1:
            i = rng.randrange(len(bounds) - 1)
            j = rng.randrange(i + 1, len(bounds))
            if kind < 0.8:
                del text[bounds[i] : bounds[j]]
            else:
                text.format(bounds[i], bounds[j], rng.choice(_FORMATS))
