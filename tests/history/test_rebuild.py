"""Rebuilding versions from a checkpoint and updates, and reading them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pycrdt
import pytest

from collab.history.rebuild import rebuild, restore_change, root_text, state_of
from collab.history.replay import TEXT_ROOT, NotFound


@dataclass
class _Source:
    seq: int
    created_ms: int = 0
    checkpoint: bytes | None = None
    updates: list[bytes] = field(default_factory=list)


def _edits(*texts: str) -> list[bytes]:
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    doc["text"] = text = pycrdt.Text()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for piece in texts:
        text += piece
    return updates


def test_checkpoint_then_updates_rebuild_the_version() -> None:
    """A version is its checkpoint with the updates after it applied."""
    first, second = _edits("ab", "cd")
    checkpoint = state_of(_Source(1, updates=[first]))
    source = _Source(2, checkpoint=checkpoint, updates=[second])
    assert str(rebuild(source).get("text", type=pycrdt.Text)) == "abcd"


def test_text_of_the_default_root_of_an_empty_version_is_empty() -> None:
    """Version 0 reads as empty text, and a root it never had is not found."""
    assert root_text(_Source(0), TEXT_ROOT) == ""
    with pytest.raises(NotFound):
        root_text(_Source(0), "other")


def test_restore_change_brings_back_the_old_content() -> None:
    """Applying the restore change to the newest version gives the old version's text."""
    updates = _edits("old", " new")
    old, latest = _Source(1, updates=updates[:1]), _Source(2, updates=updates)
    doc = rebuild(latest)
    doc.apply_update(restore_change(old, latest, None))
    assert str(doc.get("text", type=pycrdt.Text)) == "old"
