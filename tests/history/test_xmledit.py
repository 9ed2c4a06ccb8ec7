"""Making a fragment hold a tree: exact structure and formatting, unchanged nodes kept."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.history.restore import restore_update
from collab.history.richtext import prosemirror_json, tree_of
from collab.history.xmledit import sync_fragment
from tests.richdoc import add, el, random_edit, rich_doc


def pm(doc: Doc[Any]) -> dict[str, Any]:
    return prosemirror_json(tree_of(doc.get("default", type=XmlFragment)))


def copy(doc: Doc[Any]) -> Doc[Any]:
    out: Doc[Any] = Doc()
    out.apply_update(doc.get_update())
    return out


def synced(current: Doc[Any], target: Doc[Any]) -> bytes:
    updates: list[bytes] = []
    current.observe(lambda event: updates.append(event.update))
    with current.transaction():
        sync_fragment(
            current.get("default", type=XmlFragment),
            tree_of(target.get("default", type=XmlFragment)),
        )
    return updates[0] if updates else b""


def test_structure_attributes_and_formatting_exactly() -> None:
    """Blocks added, removed and nested, a level and formatting changed: the fragment ends
    up reading exactly as the target."""
    target = rich_doc(
        [
            el("heading", "Title", level=2),
            el(
                "paragraph",
                [("Hello ", None), ("world", {"bold": {}})],
                ("hardBreak", {}, []),
                "x",
            ),
            el("bulletList", el("listItem", el("paragraph", "one"))),
        ]
    )
    current = rich_doc(
        [
            el("heading", "Title", level=3),
            el("blockquote", el("paragraph", "q")),
            el("paragraph", [("Hello", {"italic": {}}), (" world", None)]),
        ]
    )
    assert synced(current, target)
    assert pm(current) == pm(target)


def test_unchanged_blocks_keep_their_identity() -> None:
    """A concurrent edit inside a paragraph the change left alone survives the merge."""
    base = rich_doc([el("paragraph", "keep"), el("paragraph", "old")])
    target = rich_doc([el("paragraph", "keep"), el("heading", "new", level=1)])
    ours = copy(base)
    update = synced(ours, target)
    theirs = copy(base)
    first = theirs.get("default", type=XmlFragment).children[0]
    assert isinstance(first, XmlElement)
    text = first.children[0]
    assert isinstance(text, XmlText)
    text.insert(4, "ing")
    theirs.apply_update(update)
    assert pm(theirs) == {
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "keeping"}]},
            {
                "type": "heading",
                "attrs": {"level": 1},
                "content": [{"type": "text", "text": "new"}],
            },
        ],
    }


def test_same_tree_is_no_change() -> None:
    """A fragment that already holds the tree gets no update."""
    doc = rich_doc([el("paragraph", [("b", {"bold": {}})])])
    assert synced(copy(doc), doc) == b""


def test_insert_into_empty() -> None:
    """An empty fragment receives the whole tree."""
    target = rich_doc([el("codeBlock", "x < y", language="py")])
    current: Doc[Any] = Doc()
    add(current.get("default", type=XmlFragment), [])
    synced(current, target)
    assert pm(current) == pm(target)


@pytest.mark.parametrize("seed", range(150))
def test_random_restores_are_exact(seed: int) -> None:
    """For random histories, restoring the older version gives exactly its JSON, and
    restoring the newer one again gives exactly that (the undo of a restore)."""
    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)
    for _ in range(rng.randint(1, 8)):
        with doc.transaction():
            random_edit(rng, fragment)
    older = copy(doc)
    for _ in range(rng.randint(1, 8)):
        with doc.transaction():
            random_edit(rng, fragment)
    newer = copy(doc)
    live = copy(doc)
    back = restore_update(live, older)
    assert pm(live) == pm(older)
    elsewhere = copy(newer)  # the update alone does it on another replica
    if back:  # empty: the two versions read the same
        elsewhere.apply_update(back)
    assert pm(elsewhere) == pm(older)
    restore_update(live, newer)
    assert pm(live) == pm(newer)
