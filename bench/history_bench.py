"""History benchmark: the whole automerge-paper trace in one document's history.

Stores the 259,778 keystrokes of tests/data/automerge-paper.json.gz as one update each
(the way a y-websocket client sends them), with a checkpoint every 1,000 updates as the
server writes them, through collab's own Store. Then measures, through ``History`` (what
the HTTP API and the CLI call): rebuilding versions, the first timeline page, diffs
between distant versions, blame, and the bytes stored against the document's size; then
compacts and measures again, checking sampled versions against the trace.

Timestamps are synthetic (the trace has none): 200 ms per keystroke, and after any
keystroke a 0.2 % chance of a pause of 10 to 60 minutes (seeded), i.e. writing sessions
of ~500 keystrokes. A second document replays the same trace with the author changing at
every pause (two authors taking turns) to time several-author diffs and blame.

    .venv/bin/python bench/history_bench.py [--keystrokes N] [--json FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from collab.config import Config, database_url
from collab.history.compaction import Policy
from collab.history.service import History
from collab.store import Store
from collab.sync.update import measure as count

TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "automerge-paper.json.gz"
START_MS = 1_700_000_000_000


def build(count: int) -> tuple[list[bytes], list[str], list[bytes]]:
    """One update per keystroke, the text after each (every 1000th), checkpoints."""
    data = json.loads(gzip.decompress(TRACE.read_bytes()))
    patches = [p for txn in data["txns"] for p in txn["patches"]][:count]
    doc: Doc[Any] = Doc(client_id=1)
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    current = ""
    texts: list[str] = [""]
    checkpoints: list[bytes] = []
    for k, (pos, deleted, inserted) in enumerate(patches, 1):
        if deleted:
            del text[pos : pos + deleted]
        if inserted:
            text.insert(pos, inserted)
        current = current[:pos] + inserted + current[pos + deleted :]
        if k % 1000 == 0:
            texts.append(current)
            checkpoints.append(doc.get_update())
    texts.append(current)
    return updates, texts, checkpoints


def times(count: int) -> list[int]:
    rng = random.Random(42)
    at, out = START_MS, []
    for _ in range(count):
        at += 200
        if rng.random() < 0.002:
            at += rng.randint(600_000, 3_600_000)
        out.append(at)
    return out


async def store_doc(
    store: Store,
    name: str,
    updates: list[bytes],
    checkpoints: list[bytes],
    stamps: list[int],
    authors: list[str],
) -> None:
    doc_id = (await store.load(name)).doc_id
    for seq, update in enumerate(updates, 1):
        # The counts a room's validator takes and stores with each update (equal to
        # measure(), tests/sync/test_update.py).
        stats = count(update)
        store.append(
            doc_id,
            seq,
            update,
            connection_id="c1",
            author=authors[seq - 1],
            created_ms=stamps[seq - 1],
            inserted=stats.inserted,
            deleted=stats.deleted,
        )
        if seq % 1000 == 0:
            store.checkpoint(doc_id, seq, checkpoints[seq // 1000 - 1])
            await store.flush()
    if len(updates) % 1000:
        # What a room writes when it unloads: a checkpoint of the final state.
        doc: Doc[Any] = Doc()
        if checkpoints:
            doc.apply_update(checkpoints[-1])
        for update in updates[len(checkpoints) * 1000 :]:
            doc.apply_update(update)
        store.checkpoint(doc_id, len(updates), doc.get_update())
    await store.flush()


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 1) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f}  max {ordered[-1]:6.1f}"


def expected_text(seq: int, updates: list[bytes], checkpoints: list[bytes]) -> str:
    """Version ``seq`` rebuilt in memory, straight from the trace's updates."""
    doc: Doc[Any] = Doc()
    base = min(seq // 1000, len(checkpoints))
    if base:
        doc.apply_update(checkpoints[base - 1])
    for update in updates[base * 1000 : seq]:
        doc.apply_update(update)
    return str(doc.get("content", type=Text))


async def measure(
    history: History,
    name: str,
    trace: tuple[list[bytes], list[str], list[bytes]],
    report: dict[str, Any],
    key: str,
) -> None:
    updates, texts, checkpoints = trace
    head = await history.head(name)
    n = head.last_seq
    rng = random.Random(7)
    seqs = [rng.randint(0, n) for _ in range(150)] + [n, 0, 1, n - 1]
    # The worst cases: just below each checkpoint, the longest replay (at most 60 of them).
    below = [c - 1 for c in await history.db.checkpoint_seqs(head.id) if c > 1]
    seqs += below[:: max(1, len(below) // 60)]
    rebuild: list[float] = []
    for seq in seqs:
        ms, _ = await timed(lambda seq=seq: history.version(head, seq))
        rebuild += ms
    ms_text = []
    wrong = 0
    for seq in range(0, n + 1, max(1, n // 40)):
        ms, version = await timed(lambda seq=seq: history.version_json(head, seq))
        ms_text += ms
        # After compaction a seq inside a merged run reads as the version before the run.
        got = version["content"].get("content", "")
        wrong += version["seq"] > seq or got != expected_text(version["seq"], updates, checkpoints)
    print(f"  version rebuild (state)      {summary(rebuild)}   ({len(seqs)} random seqs)")
    print(f"  version as JSON              {summary(ms_text)}")
    page, result = await timed(
        lambda: history.timeline(head, before=None, limit=20, gap_ms=300_000, raw=False), 7
    )
    print(
        f"  timeline first page (20)     {summary(page)}   "
        f"({sum(e['updates'] for e in result['entries'])} updates on it)"
    )
    raw, _ = await timed(
        lambda: history.timeline(head, before=None, limit=50, gap_ms=0, raw=True), 7
    )
    print(f"  timeline raw page (50)       {summary(raw)}")
    a, b = n // 5, n - n // 20
    diff, result = await timed(lambda: history.diff(head, a, b, "content"), 3)
    print(
        f"  diff {a}..{b:<14}  {summary(diff)}   (+{result['inserted']} -{result['deleted']}, "
        f"{len(result['authors'])} authors)"
    )
    blame, result = await timed(lambda: history.blame(head, n, "content"), 1)
    print(f"  blame of the newest version  {summary(blame)}   ({len(result['spans'])} spans)")
    info = await history.info(head)
    storage = info["storage"]
    print(
        f"  stored: {storage['rows']} rows, updates {storage['update_bytes']:,} B + "
        f"{storage['checkpoints']} checkpoints {storage['checkpoint_bytes']:,} B = "
        f"{storage['total_bytes']:,} B for a {storage['document_bytes']:,} B document "
        f"({len(texts[-1]):,} characters): "
        f"x{storage['total_bytes'] / storage['document_bytes']:.0f}"
    )
    report[key] = {
        "rebuild_ms_max": max(rebuild),
        "rebuild_ms_median": statistics.median(rebuild),
        "json_ms_max": max(ms_text),
        "timeline_first_page_ms_median": statistics.median(page),
        "timeline_raw_page_ms_median": statistics.median(raw),
        "diff_ms_median": statistics.median(diff),
        "blame_ms": blame[0],
        "storage": storage,
        "wrong_versions": wrong,
    }
    assert wrong == 0, f"{wrong} sampled versions differ from the trace"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=259_778)
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--keep", help="directory for the database (default: a temp dir)")
    args = parser.parse_args()
    started = time.perf_counter()
    updates, texts, checkpoints = build(args.keystrokes)
    stamps = times(len(updates))
    print(
        f"trace: {len(updates)} keystrokes, {sum(map(len, updates)):,} B of updates, "
        f"final text {len(texts[-1]):,} characters "
        f"(built in {time.perf_counter() - started:.0f} s)"
    )
    pauses = [0] + [k for k in range(1, len(stamps)) if stamps[k] - stamps[k - 1] > 300_000]
    turn = {}
    for i, k in enumerate(pauses):
        turn[k] = ("ann", "ben")[i % 2]
    two, who = [], "ann"
    for k in range(len(updates)):
        who = turn.get(k, who)
        two.append(who)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or tmp) / "history-bench.db"
        path.unlink(missing_ok=True)
        store = Store(database_url(str(path)))
        await store.open()
        report: dict[str, Any] = {"keystrokes": len(updates)}
        try:
            await store_doc(
                store, "paper", updates, checkpoints, stamps, ["kleppmann"] * len(updates)
            )
            await store_doc(store, "paper-2", updates, checkpoints, stamps, two)
            print(f"database: {path.stat().st_size:,} B on disk for both documents")
            history = History(store)
            trace = (updates, texts, checkpoints)
            for name in ("paper", "paper-2"):
                print(
                    f"{name} ({'one author' if name == 'paper' else 'two authors taking turns'}):"
                )
                await measure(history, name, trace, report, name)
            policy = Policy.from_config(Config(compact_after=0, compact_granularity=60))
            for name in ("paper", "paper-2"):
                head = await history.head(name)
                ms, result = await timed(lambda head=head: history.compact(head, policy))
                print(
                    f"compact {name}: {result['rows_before']} -> {result['rows_after']} rows, "
                    f"{result['bytes_before']:,} -> {result['bytes_after']:,} B "
                    f"({result['runs']} runs, {result['checkpoints_dropped']} checkpoints "
                    f"dropped) in {ms[0] / 1000:.1f} s"
                )
                report[f"{name}-compaction"] = {**result, "seconds": ms[0] / 1000}
            await history.db.vacuum()
            print(f"database after compaction and VACUUM: {path.stat().st_size:,} B on disk")
            for name in ("paper", "paper-2"):
                print(f"{name} after compaction:")
                await measure(history, name, trace, report, f"{name}-compacted")
        finally:
            await store.close()
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
