"""Turning stored rows back into documents.

PURE: takes bytes the store fetched and returns ``pycrdt.Doc`` objects; never runs SQL
(``store.py`` does) and never touches a socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pycrdt import Doc

__all__ = ["replay"]


def replay(checkpoint: bytes | None, updates: Iterable[bytes]) -> Doc[Any]:
    """Rebuild a document from a checkpoint and the updates stored after it.

    Args:
        checkpoint: the whole document as of some update, or ``None`` to start empty.
        updates: the updates after that checkpoint, in sequence order.

    Returns:
        A new document holding all of them.
    """
    doc: Doc[Any] = Doc()
    if checkpoint is not None:
        doc.apply_update(checkpoint)
    for update in updates:
        doc.apply_update(update)
    return doc
