"""The REST API's server-side edits, as pure functions over real pycrdt documents."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.history.edit import (
    Delete,
    Insert,
    patch_update,
    replace_update,
    rich_update,
    text_update,
)
from collab.history.replay import Conflict, replay
from collab.history.richtext import prosemirror_json, tree_of
from tests.richdoc import el, rich_doc

ROOT = "content"


def text_of(state: bytes, *updates: bytes) -> str:
    return str(replay(state, [u for u in updates if u]).get(ROOT, type=Text))


def test_replace_keeps_the_unchanged_text() -> None:
    """A replacement deletes and inserts only what differs, so a concurrent edit in the
    unchanged part survives the merge."""
    state = text_update("the quick fox", ROOT)
    update = replace_update(state, ROOT, "the quick brown fox!")
    assert text_of(state, update) == "the quick brown fox!"
    concurrent: Doc[Any] = replay(state, [])
    concurrent.get(ROOT, type=Text).insert(4, "very ")
    concurrent.apply_update(update)
    assert str(concurrent.get(ROOT, type=Text)) == "the very quick brown fox!"


def test_replace_with_the_same_text_changes_nothing() -> None:
    """Replacing a text by itself gives an empty update."""
    state = text_update("same", ROOT)
    assert replace_update(state, ROOT, "same") == b""


def test_replace_leaves_other_roots_alone() -> None:
    """Only the content text changes; other roots keep their values."""
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Text).insert(0, "a")
    doc.get("meta", type=Map)["k"] = "v"
    state = doc.get_update()
    update = replace_update(state, ROOT, "b")
    after = replay(state, [update])
    assert str(after.get(ROOT, type=Text)) == "b"
    assert after.get("meta", type=Map).to_py() == {"k": "v"}


def test_a_root_that_is_not_text_is_a_conflict() -> None:
    """Replacing or patching a content root that holds a map is refused (409)."""
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Map)["k"] = 1
    with pytest.raises(Conflict, match="is a map, not a text"):
        replace_update(doc.get_update(), ROOT, "x")
    with pytest.raises(Conflict, match="is a map"):
        patch_update(doc.get_update(), ROOT, [Insert(0, "x")])


def test_patch_counts_code_points() -> None:
    """Indexes count code points, whatever their UTF-8 length."""
    state = text_update("é😀ü", ROOT)
    update = patch_update(state, ROOT, [Insert(2, "-"), Delete(0, 1), Insert(3, "!")])
    assert text_of(state, update) == "😀-ü!"


def test_patch_of_a_text_with_embeds() -> None:
    """An embed counts one, as in the text's own indexing."""
    doc: Doc[Any] = Doc()
    content = doc.get(ROOT, type=Text)
    content.insert(0, "ab")
    content.insert_embed(1, {"image": "x.png"})
    state = doc.get_update()
    update = patch_update(state, ROOT, [Insert(2, "é"), Delete(3, 1)])
    chunks = replay(state, [update]).get(ROOT, type=Text).diff()
    assert [c for c, _ in chunks] == ["a", {"image": "x.png"}, "é"]


def test_patch_past_the_end_is_a_conflict() -> None:
    """Each operation is checked against the text as the previous ones left it."""
    state = text_update("abc", ROOT)
    with pytest.raises(Conflict, match="index 4 is past the end of the text \\(3"):
        patch_update(state, ROOT, [Insert(4, "x")])
    with pytest.raises(Conflict, match="deleting 1..3 reaches past the end"):
        patch_update(state, ROOT, [Delete(0, 1), Delete(1, 2)])
    assert text_of(state, patch_update(state, ROOT, [Insert(3, "d"), Delete(1, 3)])) == "a"


def test_patch_of_an_empty_document() -> None:
    """A document without a content root patches as an empty text."""
    state = Doc().get_update()
    assert text_of(state, patch_update(state, ROOT, [Insert(0, "new")])) == "new"
    assert patch_update(state, ROOT, [Delete(0, 0)]) == b""


def test_rich_update_merges_with_a_concurrent_edit() -> None:
    """A ProseMirror write replaces only the block that differs: a concurrent edit in a
    block it kept survives; a second identical write changes nothing."""
    base = rich_doc([el("paragraph", "keep"), el("paragraph", "old")])
    state = base.get_update()
    wanted = {
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "keep"}]},
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "new", "marks": [{"type": "bold"}]}],
            },
        ],
    }
    update = rich_update(state, None, wanted)
    first = base.get("default", type=XmlFragment).children[0]
    assert isinstance(first, XmlElement) and isinstance(first.children[0], XmlText)
    first.children[0].insert(4, "ing")  # meanwhile, in an editor
    base.apply_update(update)
    result = prosemirror_json(tree_of(base.get("default", type=XmlFragment)))
    assert result["content"][0] == {
        "type": "paragraph",
        "content": [{"type": "text", "text": "keeping"}],
    }
    assert result["content"][1] == wanted["content"][1]
    replayed: Doc[Any] = Doc()
    replayed.apply_update(state)
    replayed.apply_update(update)
    assert rich_update(replayed.get_update(), "default", wanted) == b""
    with pytest.raises(Conflict, match="writes an XML fragment"):
        rich_update(text_update("x", "content"), "content", wanted)
