"""Making a text hold given formatted chunks: characters by a diff, formatting set back."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from collab.history.textedit import restore_chunks


def edited(
    old: list[tuple[str, dict[str, Any] | None]], new: list[tuple[str, dict[str, Any] | None]]
) -> Text:
    doc: Doc[Any] = Doc()
    text: Text = doc.get("t", type=Text)
    for content, attrs in old:
        text.insert(len(text), content, attrs)
    restore_chunks(text, new)
    return text


def test_characters_and_formatting_become_the_target() -> None:
    """Inserted, deleted and kept text all end up with exactly the target's formatting,
    also around non-ASCII characters."""
    bold: dict[str, Any] = {"bold": {}}
    link = {"link": {"href": "h"}}
    new = [("Hé ", None), ("wörld", bold), ("!", link), (" end", None)]
    assert edited([("Hé wörld", {"italic": {}}), (" end", None)], new).diff() == new
    assert edited([("x", bold)], [("x", None)]).diff() == [("x", None)]


def test_nothing_to_do_changes_nothing() -> None:
    """The same chunks make no transaction at all."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "same", {"bold": {}})
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    restore_chunks(text, [("same", {"bold": {}})])
    assert updates == []
