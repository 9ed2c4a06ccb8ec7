"""Making a text (a ``Y.Text`` or a ``Y.XmlText``) hold given formatted chunks, minimally.

PURE: edits the text in place (inside the caller's transaction) and never awaits.

A character diff (the C diff-match-patch, in code points) becomes deletions and
insertions, so the characters that did not change keep their identity and concurrent edits
there still merge; inserted text gets exactly the target's formatting (every attribute in
use is named, with ``None`` for unset, since inserted text could otherwise take its
neighbour's); then the formatting of the characters that stayed is set wherever it differs
from the target's, so a restore undoes "made bold" too. pycrdt counts offsets in UTF-8
bytes (an embed counts one); the diff counts code points, and the two are converted here.
"""

from __future__ import annotations

from typing import Any

import fast_diff_match_patch as dmp
from pycrdt import Text, XmlText

__all__ = ["code_point_offsets", "restore_chunks"]

_EMBED = "\ufffc"
_DIFF_SECONDS = 2.0  # diff-match-patch gives a valid, less minimal diff past this

Chunks = list[tuple[Any, dict[str, Any] | None]]


def _pieces(text: Text | XmlText) -> tuple[str, list[tuple[Any, dict[str, Any] | None]]]:
    """The text as one string (embeds as U+FFFC) and as its formatted chunks, one chunk
    per embed."""
    chunks = text.diff()
    parts = [c if isinstance(c, str) else _EMBED for c, _ in chunks]
    return "".join(parts), chunks


def restore_chunks(
    current: Text | XmlText, new_chunks: list[tuple[Any, dict[str, Any] | None]]
) -> None:
    """Make ``current`` hold ``new_chunks`` (text or embeds with their formatting): a
    character diff, then the formatting of the text that stayed is set where it differs."""
    old, old_chunks = _pieces(current)
    new = "".join(c if isinstance(c, str) else _EMBED for c, _ in new_chunks)
    if old != new:
        embeds_old = _embed_positions(old_chunks)
        # Inserted text would inherit the formatting on its left; name every attribute in
        # use, with None for "not set", so each piece gets exactly the target's formatting.
        keys = {key for _, attrs in old_chunks + new_chunks for key in (attrs or {})}
        pos = 0  # in pycrdt units: UTF-8 bytes, an embed counts one
        i = j = 0  # code points consumed in old and new
        for op, part in dmp.diff(old, new, timelimit=_DIFF_SECONDS, counts_only=False):
            n = len(part)
            if op == "=":
                pos += _units(part, i, embeds_old)
                i += n
                j += n
            elif op == "-":
                units = _units(part, i, embeds_old)
                del current[pos : pos + units]
                i += n
            else:
                pos = _insert(current, pos, new_chunks, j, j + n, keys)
                j += n
    _restore_formatting(current, new_chunks)


def _formats(
    chunks: list[tuple[Any, dict[str, Any] | None]],
) -> list[tuple[int, dict[str, Any]]]:
    """``(code points, formatting without unset keys)`` per non-empty chunk."""
    out = []
    for content, attrs in chunks:
        size = len(content) if isinstance(content, str) else 1
        if size:
            out.append((size, {k: v for k, v in (attrs or {}).items() if v is not None}))
    return out


def _restore_formatting(
    current: Text | XmlText, new_chunks: list[tuple[Any, dict[str, Any] | None]]
) -> None:
    """Set the formatting of ``current`` (same characters as ``new_chunks`` by now) to the
    target's wherever it differs; a key the target does not set is removed (``None``)."""
    have = _formats(current.diff())
    want = _formats(new_chunks)
    # Walk both chunk lists in code points; cut at every boundary of either.
    changes: list[tuple[int, int, dict[str, Any]]] = []
    a = b = 0
    a_left, b_left = (have[0][0] if have else 0), (want[0][0] if want else 0)
    pos = 0
    while a < len(have) and b < len(want):
        step = min(a_left, b_left)
        old_attrs, new_attrs = have[a][1], want[b][1]
        if old_attrs != new_attrs and step:
            attrs = {k: new_attrs.get(k) for k in set(old_attrs) | set(new_attrs)}
            changes.append((pos, step, attrs))
        pos += step  # code points; pycrdt offsets are looked up below
        a_left -= step
        b_left -= step
        if a_left == 0:
            a += 1
            a_left = have[a][0] if a < len(have) else 0
        if b_left == 0:
            b += 1
            b_left = want[b][0] if b < len(want) else 0
    if not changes:
        return
    offsets = code_point_offsets(current)
    for start, length, attrs in changes:
        current.format(offsets[start], offsets[start + length], attrs)


def code_point_offsets(text: Text | XmlText) -> list[int]:
    """pycrdt's offset (UTF-8 bytes, an embed counts one) of every code point index, plus
    one past the end."""
    offsets = [0]
    at = 0
    for content, _ in text.diff():
        if isinstance(content, str):
            for ch in content:
                at += len(ch.encode())
                offsets.append(at)
        else:
            at += 1
            offsets.append(at)
    return offsets


def _embed_positions(chunks: list[tuple[Any, dict[str, Any] | None]]) -> set[int]:
    positions, at = set(), 0
    for content, _ in chunks:
        if isinstance(content, str):
            at += len(content)
        else:
            positions.add(at)
            at += 1
    return positions


def _units(part: str, start: int, embeds: set[int]) -> int:
    if _EMBED not in part:
        return len(part) if part.isascii() else len(part.encode())
    units = 0
    for k, ch in enumerate(part):
        units += 1 if (ch == _EMBED and start + k in embeds) else len(ch.encode())
    return units


def _insert(
    text: Text | XmlText,
    pos: int,
    chunks: list[tuple[Any, dict[str, Any] | None]],
    start: int,
    end: int,
    keys: set[str],
) -> int:
    """Insert code points ``start..end`` of the target, chunk by chunk with formatting."""
    at = 0
    for content, formatting in chunks:
        size = len(content) if isinstance(content, str) else 1
        lo, hi = max(start, at), min(end, at + size)
        if lo < hi:
            attrs = {key: (formatting or {}).get(key) for key in keys} or None
            if isinstance(content, str):
                piece = content[lo - at : hi - at]
                text.insert(pos, piece, attrs or None)
                pos += len(piece.encode())
            else:
                text.insert_embed(pos, content, attrs or None)
                pos += 1
        at += size
        if at >= end:
            break
    return pos
