"""Diff and blame of rich text: the union document, every change marked with its step."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.history.attribution import Step
from collab.history.richdiff import RichAttribution
from collab.history.richtext import prosemirror_json, tree_of
from tests.richdoc import add, el, random_edit


class Source:
    """A document edited locally, each edit one step."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.fragment = self.doc.get("default", type=XmlFragment)
        self.seq = 0

    def step(self, who: str, edit: Callable[[XmlFragment], None]) -> Step:
        before = self.doc.get_state()
        with self.doc.transaction():
            edit(self.fragment)
        self.seq += 1
        return Step(who, self.seq, self.seq, 0, 0, [self.doc.get_update(before)])

    def copy(self) -> Doc[Any]:
        doc: Doc[Any] = Doc()
        doc.apply_update(self.doc.get_update())
        return doc


def text_of(fragment: XmlFragment, block: int) -> XmlText:
    element = fragment.children[block]
    assert isinstance(element, XmlElement)
    child = element.children[0]
    assert isinstance(child, XmlText)
    return child


def run(base: Doc[Any], steps: list[Step]) -> RichAttribution:
    rich = RichAttribution(base, "default")
    try:
        rich.apply(steps)
    finally:
        rich.close()
    return rich


def ych(kind: str, user: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "user": user, "seqs": [seq, seq], **extra}


def t(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = list(marks)
    return node


def mark(change: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ychange", "attrs": change}


def test_union_of_two_versions() -> None:
    """Inserted and deleted text, a removed and an added block, text made bold and a
    heading's level changed, each attributed to its author and seq."""
    source = Source()
    source.step(
        "ann",
        lambda f: add(
            f,
            [
                el("heading", "Title", level=2),
                el("paragraph", "Hello world"),
                el("paragraph", "gone"),
            ],
        ),
    )
    base = source.copy()

    def bob(f: XmlFragment) -> None:
        text_of(f, 1).format(6, 11, {"bold": {}})
        text_of(f, 1).insert(5, ",")
        del f.children[2]
        f.children[0].attributes["level"] = 3  # type: ignore[union-attr]
        add(f, [el("paragraph", "new")])

    def cat(f: XmlFragment) -> None:
        text_of(f, 1).insert(0, "Oh ")
        del text_of(f, 1)[3:5]

    rich = run(base, [source.step("bob", bob), source.step("cat", cat)])
    assert rich.document() == {
        "type": "doc",
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 3, "ychange": ych("attributes", "bob", 2, before={"level": 2})},
                "content": [t("Title")],
            },
            {
                "type": "paragraph",
                "content": [
                    t("Oh ", mark(ych("added", "cat", 3))),
                    t("He", mark(ych("removed", "cat", 3))),
                    t("llo"),
                    t(",", mark(ych("added", "bob", 2))),
                    t(" "),
                    t("world", {"type": "bold"}, mark(ych("formatted", "bob", 2, before=[]))),
                ],
            },
            {
                "type": "paragraph",
                "attrs": {"ychange": ych("added", "bob", 2)},
                "content": [t("new", mark(ych("added", "bob", 2)))],
            },
            {
                "type": "paragraph",
                "attrs": {"ychange": ych("removed", "bob", 2)},
                "content": [t("gone", mark(ych("removed", "bob", 2)))],
            },
        ],
    }
    assert rich.totals() == {
        "inserted": 7,
        "deleted": 6,
        "formatted": 5,
        "authors": ["bob", "cat"],
    }


def test_added_then_removed_leaves_no_trace() -> None:
    """A block and text one step adds and a later one removes are not in the union; text
    formatted and formatted back is no change."""
    source = Source()
    source.step("ann", lambda f: add(f, [el("paragraph", "keep")]))
    base = source.copy()
    steps = [
        source.step("bob", lambda f: add(f, [el("paragraph", "temp")])),
        source.step("bob", lambda f: text_of(f, 0).insert(4, "ing")),
        source.step("cat", lambda f: f.children.__delitem__(1)),
        source.step("cat", lambda f: text_of(f, 0).__delitem__(slice(4, 7))),
        source.step("dan", lambda f: text_of(f, 0).format(0, 2, {"italic": {}})),
        source.step("dan", lambda f: text_of(f, 0).format(0, 2, {"italic": None})),
    ]
    rich = run(base, steps)
    assert rich.document() == {
        "type": "doc",
        "content": [{"type": "paragraph", "content": [t("keep")]}],
    }
    assert rich.totals() == {"inserted": 0, "deleted": 0, "formatted": 0, "authors": []}


def test_link_added_and_non_ascii_positions() -> None:
    """A link added to text after non-ASCII characters covers exactly that text (pycrdt
    counts UTF-8 bytes); its mark shows what the formatting was before."""
    source = Source()
    source.step(
        "ann", lambda f: add(f, [el("paragraph", [("né ", {"italic": {}}), ("wörld", None)])])
    )
    base = source.copy()
    link = {"link": {"href": "https://x.org"}}
    step = source.step(
        "bob", lambda f: text_of(f, 0).format(len("né ".encode()), len("né wörld".encode()), link)
    )
    rich = run(base, [step])
    assert rich.document()["content"][0]["content"] == [
        t("né ", {"type": "italic"}),
        t(
            "wörld",
            {"type": "link", "attrs": {"href": "https://x.org"}},
            mark(ych("formatted", "bob", 2, before=[])),
        ),
    ]


def test_blame_from_the_empty_document() -> None:
    """From the empty document every run is added by the step that wrote it, nested nodes
    included."""
    source = Source()
    steps = [
        source.step(
            "ann", lambda f: add(f, [el("bulletList", el("listItem", el("paragraph", "one")))])
        ),
        source.step("bob", lambda f: text_of(f.children[0].children[0], 0).insert(3, "!")),  # type: ignore[union-attr, arg-type]
    ]
    rich = run(Doc(), steps)
    added = ych("added", "ann", 1)
    assert rich.document() == {
        "type": "doc",
        "content": [
            {
                "type": "bulletList",
                "attrs": {"ychange": added},
                "content": [
                    {
                        "type": "listItem",
                        "attrs": {"ychange": added},
                        "content": [
                            {
                                "type": "paragraph",
                                "attrs": {"ychange": added},
                                "content": [
                                    t("one", mark(added)),
                                    t("!", mark(ych("added", "bob", 2))),
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }


# -- the union spells both versions --------------------------------------------------------


def _side(nodes: list[dict[str, Any]], drop: str | None, newer: bool) -> list[dict[str, Any]]:
    """One version read out of a union document: the ``drop`` changes left out, change
    marks removed, the older formatting and attributes put back when not ``newer``;
    adjacent texts with the same marks joined (as the version itself reads)."""
    out: list[dict[str, Any]] = []
    for original in nodes:
        node = json.loads(json.dumps(original))
        attrs = node.get("attrs", {})
        change = attrs.pop("ychange", None)
        if change and change["type"] == drop:
            continue
        if change and change["type"] == "attributes" and not newer:
            attrs = dict(change["before"])
        node.pop("attrs", None)
        if attrs:
            node["attrs"] = attrs
        if node["type"] == "text":
            marks = [m for m in node.pop("marks", []) if m["type"] != "ychange"]
            found = [m["attrs"] for m in original.get("marks", []) if m["type"] == "ychange"]
            if found and found[0]["type"] == drop:
                continue
            if found and found[0]["type"] == "formatted" and not newer:
                marks = found[0]["before"]
            if marks:
                node["marks"] = marks
            if out and out[-1]["type"] == "text" and out[-1].get("marks") == node.get("marks"):
                out[-1]["text"] += node["text"]
                continue
            out.append(node)
            continue
        content = _side(node.pop("content", []), drop, newer)
        if content:
            node["content"] = content
        out.append(node)
    return out


def _read(doc: Doc[Any]) -> dict[str, Any]:
    document = prosemirror_json(tree_of(doc.get("default", type=XmlFragment)))
    return {"type": "doc", "content": _side(document["content"], None, True)}


@pytest.mark.parametrize("seed", range(200))
def test_union_spells_both_versions(seed: int) -> None:
    """For random edits by three authors, the union document without its removed parts is
    the newer version, and without its added parts (formatting and attributes as before)
    the older one."""
    rng = random.Random(seed)
    source = Source()
    for _ in range(5):
        with source.doc.transaction():
            random_edit(rng, source.fragment)
    base = source.copy()
    older = _read(base)
    steps = []
    for k in range(rng.randint(1, 6)):
        before = source.doc.get_state()
        for _ in range(rng.randint(1, 5)):
            with source.doc.transaction():
                random_edit(rng, source.fragment)
        steps.append(
            Step(("ann", "bob", "cat")[k % 3], k + 1, k + 1, 0, 0, [source.doc.get_update(before)])
        )
    union = run(base, steps).document()["content"]
    assert {"type": "doc", "content": _side(union, "removed", True)} == _read(source.doc)
    assert {"type": "doc", "content": _side(union, "added", False)} == older
