"""Compaction's plan (which runs of rows merge) and merge (one equivalent update)."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from collab.history import compaction
from collab.history.compaction import MAX_RUN, Policy, RowInfo, Run, merge, plan
from collab.row import Row

_POLICY = Policy(
    older_than_ms=0, granularity_ms=60_000, checkpoint_updates=10_000, checkpoint_bytes=1 << 30
)


def _rows(*spec: tuple[int, str]) -> list[RowInfo]:
    return [RowInfo(seq, ms, who, 10) for seq, (ms, who) in enumerate(spec, start=1)]


def _plan(rows: list[RowInfo], named: tuple[int, ...] = ()) -> list[Run]:
    return plan(rows, horizon=rows[-1].seq, checkpoints=[], named=list(named), policy=_POLICY).runs


def test_one_authors_rows_within_the_granularity_merge_into_one_run() -> None:
    """Consecutive rows of one author less than ``granularity`` apart make one run."""
    assert _plan(_rows((0, "ann"), (1000, "ann"), (2000, "ann"))) == [Run(1, 3, 3)]


def test_a_change_of_author_ends_a_run() -> None:
    """Rows of different authors are never merged together."""
    rows = _rows((0, "ann"), (1, "ann"), (2, "bob"), (3, "bob"))
    assert _plan(rows) == [Run(1, 2, 2), Run(3, 4, 2)]


def test_a_pause_longer_than_the_granularity_ends_a_run() -> None:
    """A row ``granularity`` or more after its run's first starts a new run."""
    rows = _rows((0, "ann"), (1, "ann"), (60_000, "ann"), (60_001, "ann"))
    assert _plan(rows) == [Run(1, 2, 2), Run(3, 4, 2)]


def test_a_named_version_is_never_merged_away() -> None:
    """A run ends at a named version's seq, so that version stays readable."""
    rows = _rows((0, "ann"), (1, "ann"), (2, "ann"), (3, "ann"))
    assert _plan(rows, named=(2,)) == [Run(1, 2, 2), Run(3, 4, 2)]


def test_a_run_holds_at_most_max_run_rows() -> None:
    """A long burst is cut into runs of at most MAX_RUN rows."""
    rows = _rows(*[(0, "ann")] * (MAX_RUN + 1))
    assert _plan(rows) == [Run(1, MAX_RUN, MAX_RUN)]


def test_merge_equals_applying_the_updates_in_order() -> None:
    """The merged update gives the same document as its parts applied one by one."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("content", type=Text)
    for ch in "merged":
        text += ch
    target: Doc[Any] = Doc()
    target.apply_update(merge(updates))
    assert str(target.get("content", type=Text)) == "merged"
    assert merge(updates[:1]) == updates[0]


def test_batches_bound_the_rows_of_one_transaction() -> None:
    """Runs are cut into consecutive batches of at most max_rows rows; a larger run is a
    batch of its own."""
    runs = [Run(k * 10 + 1, k * 10 + rows, rows) for k, rows in enumerate([3, 4, 9, 2, 2])]
    assert [[run.rows for run in batch] for batch in compaction.batches(runs, 8)] == [
        [3, 4],
        [9],
        [2, 2],
    ]
    assert compaction.batches([], 8) == []


def test_a_merged_row_counts_the_sum_of_its_members() -> None:
    """A merged row's counts are its members' added up (text typed and then deleted in the
    run still counts), and unknown if one member's are."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("content", type=Text)
    text += "abc"
    del text[1:2]
    text += "dé"
    counts = [(3, 0), (0, 1), (2, 0)]
    rows = [
        Row(seq, seq, seq, u, "ann", "c1", ins, dels)
        for seq, (u, (ins, dels)) in enumerate(zip(updates, counts, strict=True), start=1)
    ]
    (merged,) = compaction.merge_runs([Run(1, 3, 3)], rows)
    assert (merged.inserted, merged.deleted) == (5, 1)
    rows[1] = Row(2, 2, 2, updates[1], "ann", "c1")
    (merged,) = compaction.merge_runs([Run(1, 3, 3)], rows)
    assert (merged.inserted, merged.deleted) == (None, None)
