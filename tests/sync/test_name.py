"""The rule room and version names share: no control characters."""

from __future__ import annotations

import pytest

from collab.sync.name import has_control_characters


@pytest.mark.parametrize("text", ["a\nb", "\x00", "tab\there", "del\x7f", "\x1b[2J"])
def test_c0_controls_and_delete_are_found(text: str) -> None:
    """Any C0 control character or DEL anywhere in a name is found."""
    assert has_control_characters(text)


@pytest.mark.parametrize("text", ["notes", "Grüße/2026", "名前 с пробелом", "a\x80b", ""])
def test_printable_text_and_c1_controls_pass(text: str) -> None:
    """Letters, spaces, slashes and C1 controls are not control characters here."""
    assert not has_control_characters(text)
