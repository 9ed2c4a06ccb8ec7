"""Compaction: merging old runs of updates into coarser steps, and thinning checkpoints.

PURE: decides from row metadata which runs to merge and which checkpoints to drop, and
merges a run's bytes; ``service`` fetches and ``collab.store`` rewrites. This is the one
place the log is ever rewritten, so the rules are strict:

- A merged run is consecutive updates by one author whose first and last are less than
  ``granularity`` apart; it becomes one row keyed by the run's *last* seq, holding
  ``merge_updates`` of the run. Every version that remains means exactly what it meant
  before, and a seq inside a run reads as the version before the run.
- Named versions and every checkpoint that is kept stay row boundaries, so they remain
  exact versions. A checkpoint that is dropped is simply deleted: only checkpoints whose
  neighbours stay within the rebuild bound (``checkpoint_updates`` rows and
  ``checkpoint_bytes`` bytes between kept checkpoints) go; the newest never does.
- Only rows at or below the document's newest checkpoint and older than the policy's age
  are touched. A loaded room never reads them (it loads from the newest checkpoint on) and
  never writes them (it only appends above its own seq), so compaction cannot race it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pycrdt import merge_updates

from collab.config import Config
from collab.row import MergedRun, Row

__all__ = ["Plan", "Policy", "RowInfo", "Run", "batches", "merge", "merge_runs", "plan"]

MAX_BATCH_ROWS = 5000
"""Rows one compaction transaction rewrites at most."""

# merge_updates grows faster than linearly with the number of updates (5 ms for 1,000
# keystrokes, 90 ms for 5,000): runs are capped, and merged in chunks.
MAX_RUN = 1000
_CHUNK = 256
MAX_CHECKPOINT_BYTES = 512 * 1024
"""At most this many bytes of (merged) rows between two checkpoints kept by compaction."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What compaction may do.

    Args:
        older_than_ms: only updates at least this old are merged.
        granularity_ms: a merged run spans less than this (the finest timeline step left).
        checkpoint_updates: at most this many rows between two kept checkpoints...
        checkpoint_bytes: ...and at most this many bytes of rows.
    """

    older_than_ms: int
    granularity_ms: int
    checkpoint_updates: int
    checkpoint_bytes: int

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        """The policy a server's settings describe (``compact_*`` and ``checkpoint_*``)."""
        return cls(
            older_than_ms=int(config.compact_after * 1000),
            granularity_ms=int(config.compact_granularity * 1000),
            checkpoint_updates=config.checkpoint_updates,
            # Merged steps are big: bytes, not their count, bound their replay (~30 ms per
            # MiB); half the live setting keeps a rebuild well inside 50 ms.
            checkpoint_bytes=min(config.checkpoint_bytes, MAX_CHECKPOINT_BYTES),
        )


@dataclass(frozen=True, slots=True)
class RowInfo:
    """A stored row without its bytes: what planning needs."""

    seq: int
    created_ms: int
    who: str
    size: int


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive rows ``first_seq..last_seq`` (``rows`` of them) to merge into one."""

    first_seq: int
    last_seq: int
    rows: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Runs to merge and checkpoints (by ``upto_seq``) to delete."""

    runs: list[Run]
    drop_checkpoints: list[int]

    @property
    def empty(self) -> bool:
        return not self.runs and not self.drop_checkpoints


def plan(
    rows: Sequence[RowInfo],
    *,
    horizon: int,
    checkpoints: Sequence[int],
    named: Sequence[int],
    policy: Policy,
) -> Plan:
    """Decide what to merge and which checkpoints to drop.

    Args:
        rows: every row of the document up to its newest checkpoint, ascending (rows
            above ``horizon`` are only counted, for the checkpoint spacing).
        horizon: the last seq compaction may touch (at or below the newest checkpoint,
            and no row up to it newer than the policy allows).
        checkpoints: every checkpoint's ``upto_seq``, ascending.
        named: the seqs of named versions.
    """
    boundaries = set(named) | set(checkpoints)
    runs: list[Run] = []
    start = 0
    while start < len(rows):
        first = rows[start]
        end = start
        while (
            end + 1 < len(rows)
            and rows[end + 1].seq <= horizon
            and rows[end].seq not in boundaries
            and rows[end + 1].who == first.who
            and rows[end + 1].created_ms - first.created_ms < policy.granularity_ms
            and end + 1 - start < MAX_RUN
        ):
            end += 1
        if end > start and first.seq <= horizon:
            runs.append(Run(first.seq, rows[end].seq, end - start + 1))
        start = end + 1
    return Plan(runs, _thin(rows, runs, horizon, checkpoints, policy))


def _thin(
    rows: Sequence[RowInfo],
    runs: Sequence[Run],
    horizon: int,
    checkpoints: Sequence[int],
    policy: Policy,
) -> list[int]:
    """Checkpoints at or below ``horizon`` that can go while the rebuild bound holds."""
    if len(checkpoints) < 2:
        return []
    # Cost (rows, bytes) of replaying up to each seq after compaction: a merged run counts
    # as one row of the run's bytes (an overestimate: merging shrinks them).
    inside: set[int] = set()
    for run in runs:
        inside.update(range(run.first_seq, run.last_seq))
    cost: dict[int, tuple[int, int]] = {}
    count = size = 0
    for row in rows:
        size += row.size
        if row.seq not in inside:
            count += 1
        cost[row.seq] = (count, size)
    total = (count, size)

    def distance(a: int, b: int) -> tuple[int, int]:
        ca, cb = cost.get(a, (0, 0)), cost.get(b, total)
        return cb[0] - ca[0], cb[1] - ca[1]

    def fits(a: int, b: int) -> bool:
        n, nbytes = distance(a, b)
        return n <= policy.checkpoint_updates and nbytes <= policy.checkpoint_bytes

    droppable = [c for c in checkpoints[:-1] if c <= horizon]
    # The first checkpoint above the droppable ones must stay reachable.
    anchor_after = next((c for c in checkpoints if c not in droppable), checkpoints[-1])
    drop: list[int] = []
    last_kept = 0
    for k, c in enumerate(droppable):
        following = droppable[k + 1] if k + 1 < len(droppable) else anchor_after
        if fits(last_kept, following):
            drop.append(c)
        else:
            last_kept = c
    return drop


def merge(updates: Sequence[bytes]) -> bytes:
    """One update equivalent to applying ``updates`` in order."""
    if len(updates) == 1:
        return updates[0]
    parts = list(updates)
    while len(parts) > 1:
        parts = [merge_updates(*parts[i : i + _CHUNK]) for i in range(0, len(parts), _CHUNK)]
    return parts[0]


def batches(runs: Sequence[Run], max_rows: int = MAX_BATCH_ROWS) -> list[list[Run]]:
    """``runs`` cut into consecutive batches of at most ``max_rows`` rows (a run larger
    than that is a batch of its own): each batch is replaced in one transaction."""
    out: list[list[Run]] = []
    size = 0
    for run in runs:
        if not out or size + run.rows > max_rows:
            out.append([])
            size = 0
        out[-1].append(run)
        size += run.rows
    return out


def merge_runs(runs: Sequence[Run], rows: Sequence[Row]) -> list[MergedRun]:
    """Each run of ``runs`` merged into one row, from ``rows`` (every row the runs cover,
    by seq): Yjs work, for a worker thread. A merged row's counts are the sum of its
    members' (``None`` if any member was not measured: the timeline then measures the
    merged bytes, as it did before counts were stored)."""
    merged = []
    k = 0
    for run in runs:
        while rows[k].seq < run.first_seq:
            k += 1
        end = k
        while end < len(rows) and rows[end].seq <= run.last_seq:
            end += 1
        members, k = rows[k:end], end
        last = members[-1]
        counted = all(r.inserted is not None and r.deleted is not None for r in members)
        merged.append(
            MergedRun(
                run.first_seq,
                run.last_seq,
                len(members),
                merge([r.data for r in members]),
                last.created_ms,
                last.author,
                last.connection_id,
                sum(r.inserted or 0 for r in members) if counted else None,
                sum(r.deleted or 0 for r in members) if counted else None,
            )
        )
    return merged
