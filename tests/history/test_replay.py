"""The pure side of history: measuring updates, versions' content, the timeline, diff and
blame, restore and compaction planning, on real pycrdt documents and the real trace."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.history import compaction
from collab.history.attribution import Attribution, Step
from collab.history.replay import (
    MAX_GROUP,
    BadRequest,
    Row,
    Timeline,
    content_of,
    format_ms,
    parse_time,
    replay,
    root_kinds,
    spaced,
)
from collab.history.restore import restore_update
from collab.sync.update import measure
from tests.trace import trace


def _updates(doc: Doc[Any]) -> list[bytes]:
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def _rich() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc["content"] = Text("hello wörld 😀")
    doc["content"].format(0, 5, {"bold": True})
    doc["content"].insert_embed(3, {"img": 1})
    doc["meta"] = Map({"title": "T", "n": 2, "nested": Map({"z": [1, 2.5]})})
    doc["list"] = Array([1, "two", {"k": 3}])
    xml = XmlFragment()
    doc["xml"] = xml
    xml.children.append(XmlElement("p", {"class": "c"}, [XmlText("hi")]))
    return doc


# -- measuring updates --


def test_measure_counts_inserted_and_deleted_characters() -> None:
    """measure() counts the characters an update inserts and the ones it deletes."""
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    updates = _updates(doc)
    text += "héllo"
    del text[0:1]
    text.insert(0, "😀")
    assert [(s.inserted, s.deleted) for s in map(measure, updates)] == [(5, 0), (0, 1), (1, 0)]


def test_measure_reads_every_kind_of_content() -> None:
    """Maps, arrays, embeds, formatting and XML all parse; only text counts as characters."""
    stats = measure(_rich().get_update())
    assert stats.inserted == len("hello wörld 😀") + len("hi")


def test_measure_agrees_with_the_trace() -> None:
    """Over a slice of the real trace the counts are exactly the trace's inserts/deletes."""
    sample = trace(3000)
    inserted = sum(measure(u).inserted for u in sample.updates)
    deleted = sum(measure(u).deleted for u in sample.updates)
    assert inserted - deleted == len(sample.texts[-1])
    assert inserted + deleted == 3000  # every keystroke is one character


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\x01\x01\x05\x00\x04", b"\x00\x00\x00"])
def test_measure_rejects_garbage(garbage: bytes) -> None:
    """Bytes that are not an update raise ValueError."""
    with pytest.raises(ValueError):
        measure(garbage)


# -- versions --


def test_root_kinds_and_content_from_stored_bytes() -> None:
    """A document rebuilt from bytes knows each root's type and gives JSON values."""
    doc = replay(_rich().get_update(), [])
    assert root_kinds(doc) == {"content": "text", "list": "array", "meta": "map", "xml": "xml"}
    assert content_of(doc) == {
        "content": "hello wörld 😀",
        "list": [1, "two", {"k": 3}],
        "meta": {"title": "T", "n": 2, "nested": {"z": [1, 2.5]}},
        "xml": '<p class="c">hi</p>',
    }


def test_emptied_roots() -> None:
    """An emptied "content" is still text (""); another emptied root has no type (null)."""
    doc: Doc[Any] = Doc()
    doc["content"] = Text("abc")
    doc["other"] = Text("xyz")
    del doc["content"][0:3]
    del doc["other"][0:3]
    assert content_of(replay(doc.get_update(), [])) == {"content": "", "other": None}


def test_versions_of_the_trace() -> None:
    """Checkpoint plus updates rebuilds every sampled version of the real trace exactly."""
    sample = trace(2500)
    checkpoint = replay(None, sample.updates[:1000]).get_update()
    for seq in spaced(0, 2500, 40):
        if seq >= 1000:
            doc = replay(checkpoint, sample.updates[1000:seq])
        else:
            doc = replay(None, sample.updates[:seq])
        assert str(doc.get("content", type=Text)) == sample.texts[seq]


def test_times() -> None:
    """Times parse from ISO-8601 (naive is UTC) or epoch ms, and print as ISO with Z."""
    assert parse_time("2026-11-22T10:00:00Z") == 1_795_341_600_000
    assert parse_time("2026-11-22T10:00:00") == 1_795_341_600_000
    assert parse_time("2026-11-22T11:00:00+01:00") == 1_795_341_600_000
    assert parse_time("1795341600000") == 1_795_341_600_000
    assert format_ms(1_795_341_600_123) == "2026-11-22T10:00:00.123Z"
    with pytest.raises(BadRequest, match="bad time"):
        parse_time("yesterday")


# -- timeline --


def _row(seq: int, ms: int, author: str | None = "alice", first: int | None = None) -> Row:
    return Row(seq, first or seq, ms, b"\x00\x00", author, "c1")


def test_timeline_groups_by_author_and_gap() -> None:
    """Same author within the gap is one entry; another author or a pause starts one."""
    rows = [
        _row(6, 10_000, "bob"),
        _row(5, 9_000, "alice"),
        _row(4, 8_500, "alice"),
        _row(3, 1_000, "alice"),  # 7.5 s before the next: past the 5 s gap
        _row(2, 900, None),
        _row(1, 800, None),
    ]
    timeline = Timeline(gap_ms=5_000, limit=10)
    assert all(timeline.add(row) for row in rows)
    got = [(e.first_seq, e.last_seq, e.authors, e.updates) for e in timeline.entries]
    assert got == [
        (6, 6, ["bob"], 1),
        (4, 5, ["alice"], 2),
        (3, 3, ["alice"], 1),
        (1, 2, ["connection:c1"], 2),
    ]


def test_timeline_limit_named_versions_raw_and_merged_rows() -> None:
    """A full page refuses the next row; named seqs end entries; raw gives one per row;
    a merged row counts every update it covers."""
    rows = [_row(10, 100), _row(9, 99, first=5), _row(4, 98), _row(3, 97), _row(2, 96, "bob")]
    timeline = Timeline(gap_ms=10_000, limit=2, named={4: ["draft"]})
    assert [timeline.add(r) for r in rows] == [True, True, True, True, False]
    assert [(e.first_seq, e.last_seq, e.updates, e.names) for e in timeline.entries] == [
        (5, 10, 6, []),
        (3, 4, 2, ["draft"]),
    ]
    raw = Timeline(gap_ms=10_000, limit=10, raw=True)
    for row in rows:
        raw.add(row)
    assert len(raw.entries) == 5


def test_timeline_caps_entry_size() -> None:
    """However fast one author types, an entry holds at most MAX_GROUP updates."""
    timeline = Timeline(gap_ms=10_000, limit=10)
    for seq in range(MAX_GROUP + 10, 0, -1):
        timeline.add(_row(seq, 1000))
    assert [e.updates for e in timeline.entries] == [MAX_GROUP, 10]


def _typed_rows() -> list[Row]:
    """Rows of real updates, newest first: two authors typing, deleting, pausing, with
    astral and accented text, each row carrying the counts measure() gives its bytes."""
    doc: Doc[Any] = Doc()
    updates = _updates(doc)
    text = doc.get("content", type=Text)
    edits = ["hello", " wörld", "😀", "!", None, "ünïcode", None, "x", "y", "z"]
    for k, edit in enumerate(edits):
        if edit is None:
            del text[0:3]
        else:
            text += edit
        assert len(updates) == k + 1
    rows = []
    for seq, update in enumerate(updates, 1):
        stats = measure(update)
        who = "alice" if seq <= 6 else "bob"
        ms = seq * 1000 + (60_000 if seq > 8 else 0)
        rows.append(Row(seq, seq, ms, update, who, "c1", stats.inserted, stats.deleted))
    return rows[::-1]


def _entries(rows: list[Row]) -> list[tuple[int, int, list[str], int, int, int]]:
    timeline = Timeline(gap_ms=5_000, limit=10)
    assert all(timeline.add(row) for row in rows)
    return [
        (e.first_seq, e.last_seq, e.authors, e.updates, e.inserted, e.deleted)
        for e in timeline.entries
    ]


def test_timeline_from_stored_counts_equals_the_one_from_decoding() -> None:
    """A timeline over rows with stored counts has the same entries as one that decodes
    every update (counts left out), and as one over a mix of both."""
    rows = _typed_rows()
    decoded = [
        Row(r.seq, r.first_seq, r.created_ms, r.data, r.author, r.connection_id) for r in rows
    ]
    mixed = [r if r.seq % 2 else d for r, d in zip(rows, decoded, strict=True)]
    assert _entries(rows) == _entries(decoded) == _entries(mixed)
    assert sum(e[4] for e in _entries(rows)) == len("hello wörld😀!ünïcodexyz")


def test_timeline_uses_stored_counts_without_the_bytes() -> None:
    """fold() takes a row's stored counts as they are, so a row with counts needs no
    bytes, and a row without counts is measured from its bytes."""
    rows = _typed_rows()
    tuples = [
        (r.seq, r.created_ms, r.author, r.connection_id, r.inserted, r.deleted, None)
        if r.seq % 3
        else (r.seq, r.created_ms, r.author, r.connection_id, None, None, r.data)
        for r in rows
    ]
    timeline = Timeline(gap_ms=5_000, limit=10)
    assert timeline.fold(tuples, 0)
    got = [
        (e.first_seq, e.last_seq, e.authors, e.updates, e.inserted, e.deleted)
        for e in timeline.entries
    ]
    assert got == _entries(rows)


# -- attribution --


def test_diff_attributes_inserts_and_deletes_to_steps() -> None:
    """Each step's net change is attributed to it; text inserted then deleted vanishes."""
    src: Doc[Any] = Doc()
    text = src.get("content", type=Text)
    text += "hello wörld"
    base = src.get_update()
    updates = _updates(src)
    del text[7:12]  # "örld" is 5 bytes in pycrdt's units
    text.insert(7, "thére")
    text += "!"
    text.insert(0, ">> ")
    del text[0:3]
    doc = replay(base, [])
    attribution = Attribution(doc, "content")
    attribution.apply(
        [
            Step("alice", 2, 3, 0, 0, updates[0:2]),
            Step("bob", 4, 5, 0, 0, updates[2:4]),
            Step("alice", 6, 6, 0, 0, updates[4:5]),
        ]
    )
    spans = [(s.op, s.text, s.step.who if s.step else None) for s in attribution.spans()]
    assert spans == [
        ("equal", "hello w", None),
        ("delete", "örld", "alice"),
        ("insert", "thére", "alice"),
        ("insert", "!", "bob"),
    ]


def test_blame_of_the_trace_in_steps() -> None:
    """Blame from an empty document: the spans' text is the version's text, each span
    from the step whose updates wrote it."""
    sample = trace(1500)
    steps = [
        Step(
            f"author{k}", k * 500 + 1, k * 500 + 500, 0, 0, sample.updates[k * 500 : k * 500 + 500]
        )
        for k in range(3)
    ]
    attribution = Attribution(Doc(), "content")
    attribution.apply(steps)
    spans = attribution.spans()
    assert {s.op for s in spans} == {"insert"}
    assert "".join(s.text for s in spans) == sample.texts[1500]
    # Replaying the first step alone gives exactly the text blamed on author0 back then.
    first = Attribution(Doc(), "content")
    first.apply(steps[:1])
    assert "".join(s.text for s in first.spans()) == sample.texts[500]


# -- restore --


def test_restore_brings_back_every_root() -> None:
    """The restore update turns the current content back into the target's, for text
    (formatting and embeds included), maps, arrays and XML; roots added later are emptied."""
    doc = _rich()
    target = replay(doc.get_update(), [])
    wanted = content_of(target)
    text = doc["content"]
    del text[0:8]
    text += " more"
    doc["meta"]["title"] = "U"
    del doc["meta"]["n"]
    doc["list"].append(5)
    del doc["list"][0]
    doc["xml"].children.append(XmlElement("q"))
    doc["later"] = Map({"a": 1})
    update = restore_update(replay(doc.get_update(), []), target)
    doc.apply_update(update)
    assert content_of(doc) == {**wanted, "later": None}
    assert doc["content"].diff() == target.get("content", type=Text).diff()


def test_restore_of_the_same_content_is_empty() -> None:
    """Restoring a version whose content is already current changes nothing."""
    doc = _rich()
    assert restore_update(replay(doc.get_update(), []), replay(doc.get_update(), [])) == b""


def test_restore_the_trace() -> None:
    """Restoring an old version of the real trace gives its exact text, and restoring the
    version before that restore undoes it."""
    sample = trace(2000)
    current = replay(None, sample.updates)
    old = replay(None, sample.updates[:700])
    undo_target = replay(current.get_update(), [])
    current.apply_update(restore_update(replay(current.get_update(), []), old))
    assert str(current.get("content", type=Text)) == sample.texts[700]
    current.apply_update(restore_update(replay(current.get_update(), []), undo_target))
    assert str(current.get("content", type=Text)) == sample.texts[2000]


# -- compaction --


def _info(seq: int, ms: int, who: str = "alice", size: int = 10) -> compaction.RowInfo:
    return compaction.RowInfo(seq, ms, who, size)


POLICY = compaction.Policy(
    older_than_ms=0, granularity_ms=1000, checkpoint_updates=4, checkpoint_bytes=10**6
)


def test_plan_respects_author_granularity_boundaries_and_horizon() -> None:
    """Runs never cross an author change, the granularity, a named version, a checkpoint
    or the horizon."""
    rows = [
        _info(1, 0),
        _info(2, 100),
        _info(3, 200, "bob"),
        _info(4, 300, "bob"),
        _info(5, 400, "bob"),  # named
        _info(6, 500, "bob"),
        _info(7, 2000, "bob"),  # past the granularity of the run that started at 500
        _info(8, 2100, "bob"),  # checkpoint
        _info(9, 2200, "bob"),
        _info(10, 2300, "bob"),  # beyond the horizon
    ]
    plan = compaction.plan(rows, horizon=9, checkpoints=[8, 10], named=[5], policy=POLICY)
    assert [(r.first_seq, r.last_seq) for r in plan.runs] == [(1, 2), (3, 5), (7, 8)]


def test_plan_thins_checkpoints_within_the_rebuild_bound() -> None:
    """Checkpoints go only while every kept one stays within checkpoint_updates rows of the
    previous; the newest always stays."""
    rows = [_info(seq, seq * 10_000) for seq in range(1, 21)]  # nothing merges
    plan = compaction.plan(
        rows, horizon=20, checkpoints=[2, 4, 6, 8, 10, 20], named=[], policy=POLICY
    )
    assert plan.runs == []
    assert plan.drop_checkpoints == [2, 6]  # kept: 4, 8, 10 (10 -> 20 is too far anyway)


def test_merge_equals_the_updates_in_order() -> None:
    """A merged run applied at once gives the same document as its updates one by one."""
    sample = trace(1200)
    merged = compaction.merge(sample.updates[200:1200])
    doc = replay(None, sample.updates[:200])
    doc.apply_update(merged)
    assert str(doc.get("content", type=Text)) == sample.texts[1200]


def test_replay_skips_stored_rows_the_validator_refuses() -> None:
    """A stored row that yrs would take but the validator refuses (here an overlong varint,
    which no encoder writes) is skipped at replay like a client's, and reported."""
    doc: Doc[Any] = Doc()
    doc.get("content", type=Text).insert(0, "kept")
    skipped: list[int] = []
    replayed = replay(None, [doc.get_update(), b"\x80\x00\x00"], skipped)
    assert skipped == [1]
    assert str(replayed.get("content", type=Text)) == "kept"
