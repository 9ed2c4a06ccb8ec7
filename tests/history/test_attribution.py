"""Attribution, the engine of diff and blame: real pycrdt documents edited by two authors,
and the spans that say who inserted and who deleted each part of the text."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.history.attribution import Attribution, Span, Step

ROOT = "content"


def _edit(doc: Doc[Text], change: str, *args: object) -> bytes:
    """Apply one edit to ``doc``'s text and return the update it produced."""
    before = doc.get_state()
    text = doc.get(ROOT, type=Text)
    if change == "insert":
        index, value = args
        text.insert(int(str(index)), str(value))
    else:
        start, end = args
        del text[int(str(start)) : int(str(end))]
    return doc.get_update(before)


def _step(who: str, seq: int, *updates: bytes) -> Step:
    return Step(who, seq, seq + len(updates) - 1, seq * 1000, seq * 1000, updates)


def _base(text: str) -> tuple[Doc[Text], Doc[Text]]:
    """An author's document holding ``text``, and a copy of it as history's base version."""
    author: Doc[Text] = Doc()
    author.get(ROOT, type=Text).insert(0, text)
    base: Doc[Text] = Doc()
    base.apply_update(author.get_update())
    return author, base


def _ops(spans: list[Span]) -> list[tuple[str, str, str | None]]:
    return [(s.op, s.text, s.step.who if s.step else None) for s in spans]


def test_kept_text_has_no_author() -> None:
    _, base = _base("hello")
    attribution = Attribution(base, ROOT)
    attribution.apply([])
    assert _ops(attribution.spans()) == [("equal", "hello", None)]


def test_an_insertion_is_attributed_to_its_step() -> None:
    author, base = _base("hello world")
    attribution = Attribution(base, ROOT)
    attribution.apply([_step("ann", 2, _edit(author, "insert", 5, ","))])
    assert _ops(attribution.spans()) == [
        ("equal", "hello", None),
        ("insert", ",", "ann"),
        ("equal", " world", None),
    ]


def test_a_deletion_of_base_text_is_kept_as_deleted_by_its_step() -> None:
    author, base = _base("hello cruel world")
    attribution = Attribution(base, ROOT)
    attribution.apply([_step("bob", 2, _edit(author, "delete", 5, 11))])
    assert _ops(attribution.spans()) == [
        ("equal", "hello", None),
        ("delete", " cruel", "bob"),
        ("equal", " world", None),
    ]


def test_text_inserted_and_deleted_within_one_step_never_shows() -> None:
    """A step's net change is what counts: a typo fixed in the same run is not a change."""
    author, base = _base("ab")
    typo = _edit(author, "insert", 1, "xx")
    fix = _edit(author, "delete", 1, 3)
    attribution = Attribution(base, ROOT)
    attribution.apply([_step("ann", 2, typo, fix)])
    assert _ops(attribution.spans()) == [("equal", "ab", None)]


def test_two_authors_in_turn_each_keep_their_own_part() -> None:
    author, base = _base("")
    first = _step("ann", 1, _edit(author, "insert", 0, "Dear Bob,"))
    second = _step("bob", 2, _edit(author, "insert", 9, " hi Ann."))
    attribution = Attribution(base, ROOT)
    attribution.apply([first, second])
    assert _ops(attribution.spans()) == [
        ("insert", "Dear Bob,", "ann"),
        ("insert", " hi Ann.", "bob"),
    ]


def test_text_written_after_the_base_and_deleted_later_leaves_no_trace() -> None:
    """A diff from the base shows what the base lost and what is new; text that came and
    went in between is neither."""
    author, base = _base("")
    written = _step("ann", 1, _edit(author, "insert", 0, "draft text"))
    removed = _step("bob", 2, _edit(author, "delete", 0, 6))
    attribution = Attribution(base, ROOT)
    attribution.apply([written, removed])
    assert _ops(attribution.spans()) == [("insert", "text", "ann")]


def test_positions_count_utf8_bytes_as_yjs_does() -> None:
    """pycrdt reports positions in UTF-8 bytes: an insertion after non-ASCII text lands
    after the right character, never inside one."""
    author, base = _base("héllo wörld")
    attribution = Attribution(base, ROOT)
    attribution.apply([_step("ann", 2, _edit(author, "insert", len("héllo".encode()), "!"))])
    assert _ops(attribution.spans()) == [
        ("equal", "héllo", None),
        ("insert", "!", "ann"),
        ("equal", " wörld", None),
    ]


def test_a_malformed_row_is_left_out_as_replay_leaves_it_out() -> None:
    author, base = _base("ok")
    good = _edit(author, "insert", 2, "!")
    attribution = Attribution(base, ROOT)
    attribution.apply([_step("ann", 2, b"\x01\xff\xff", good)])
    assert _ops(attribution.spans()) == [("equal", "ok", None), ("insert", "!", "ann")]


def test_close_stops_observing_the_document() -> None:
    author, base = _base("a")
    attribution = Attribution(base, ROOT)
    attribution.close()
    base.apply_update(_edit(author, "insert", 1, "b"))
    assert _ops(attribution.spans()) == [("equal", "a", None)]
