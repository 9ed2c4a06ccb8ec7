"""History as the API and the command line see it: fetch rows, let the pure modules decide.

``History`` asks ``collab.store`` (``HistoryStore``) for rows, hands them to the pure
modules (``replay``, ``rebuild``, ``compaction``), and returns JSON-ready data. It runs no
SQL and speaks no HTTP; it is the one module of ``collab.history`` that does I/O. All
pycrdt work of one request happens in one worker thread (a ``rebuild`` function), after
everything it needs was fetched: replaying a large document takes
milliseconds that the event loop should spend relaying, and a pycrdt document stays in the
thread that made it.

Errors are ``collab.history.replay.HistoryError`` subclasses carrying an HTTP status:
unknown document or version (404), malformed parameter (400), duplicate name (409).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collab.clock import now_ms
from collab.history import compaction
from collab.history.attribution import Step
from collab.history.rebuild import (
    Steps,
    attribute,
    content_json,
    restore_change,
    root_of,
    root_rich,
    root_text,
    sample,
    state_of,
)
from collab.history.replay import (
    BadRequest,
    Conflict,
    NotFound,
    Row,
    Timeline,
    format_ms,
    identity,
    parse_time,
    spaced,
)
from collab.store import (
    DocumentHead,
    HistoryStore,
    NamedVersion,
    Store,
    VersionSource,
)
from collab.sync.name import has_control_characters

__all__ = ["History", "Version"]

_FETCH = 5000  # timeline rows fetched per query, at most
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Version:
    """A rebuilt version: its seq, its time, and the document as one Yjs update."""

    seq: int
    created_ms: int
    state: bytes


class History:
    """Read (and restore, label, compact) the history of the documents in ``store``.

    Args:
        store: the open store.
        loaded: tells whether a room is loaded in this process; its updates may still be
            queued, so reads of it commit the queue first (``Store.flush``, cheap).
    """

    def __init__(self, store: Store, loaded: Callable[[str], bool] = lambda _: False) -> None:
        self.store = store
        self.db = HistoryStore(store)
        self.loaded = loaded

    # -- finding things --

    async def head(self, name: str) -> DocumentHead:
        """The document ``name`` with its newest seq.

        Raises:
            NotFound: no document has that name.
            StoreUnavailable: the database did not answer within ``db_timeout``.
        """
        if self.loaded(name):
            async with self.store.bounded():
                await self.store.flush()
        head = await self.db.document(name)
        if head is None:
            raise NotFound(f"no document named {name!r}")
        return head

    async def head_of(self, name: str, lineage: str) -> DocumentHead:
        """History ``lineage`` of document ``name``: its current one, or one a reset
        retired and kept (docs/lineage.md).

        Raises:
            NotFound: no document has that name, or it has no such history.
        """
        current = await self.head(name)
        head = await self.db.lineage(name, lineage)
        if head is None:
            raise NotFound(f"{name!r} keeps no history with lineage {lineage!r}")
        return current if head.id == current.id else head

    async def resolve(self, head: DocumentHead, seq: str | None, at: str | None) -> int:
        """The version a request names by ``seq`` or by time ``at`` (default: the newest).

        Raises:
            BadRequest: both given, or not a number / time.
            NotFound: a seq after the newest version.
        """
        if seq is not None and at is not None:
            raise BadRequest("give a seq or a time, not both")
        if at is not None:
            return await self.db.seq_at(head.id, parse_time(at))
        if seq is None or seq == "latest":
            return head.last_seq
        try:
            number = int(seq)
        except ValueError:
            raise BadRequest(f"bad seq {seq!r}: expected a whole number") from None
        if number < 0:
            raise BadRequest(f"bad seq {number}: versions start at 0")
        if number > head.last_seq:
            raise NotFound(f"no version {number}: {head.name!r} has {head.last_seq} updates")
        return number

    async def _source(self, head: DocumentHead, seq: int) -> VersionSource:
        return await self.db.version_source(head.id, seq)

    # -- versions --

    async def version(self, head: DocumentHead, seq: int) -> Version:
        """The document as it was after update ``seq`` (or the version before a merged run
        that contains ``seq``)."""
        source = await self._source(head, seq)
        state = await asyncio.to_thread(state_of, source)
        return Version(source.seq, source.created_ms, state)

    async def version_json(self, head: DocumentHead, seq: int) -> dict[str, Any]:
        """``{"seq", "time", "content": {root: value}}``."""
        source = await self._source(head, seq)
        content = await asyncio.to_thread(content_json, source)
        return {"seq": source.seq, "time": format_ms(source.created_ms), "content": content}

    async def version_text(self, head: DocumentHead, seq: int, root: str | None) -> str:
        """One root of a version (default: its main root) as text: JSON for maps and
        arrays, escaped XML for rich text.

        Raises:
            NotFound: the version has no such root.
        """
        source = await self._source(head, seq)
        return await asyncio.to_thread(root_text, source, root)

    async def version_rich(
        self, head: DocumentHead, seq: int, root: str | None, fmt: str
    ) -> tuple[Version, Any]:
        """A rich-text root of a version as ProseMirror JSON or HTML (``fmt``); the
        version (without its state) and the document.

        Raises:
            NotFound: the version has no such root.
            BadRequest: the root is not rich text.
        """
        source = await self._source(head, seq)
        document = await asyncio.to_thread(root_rich, source, root, fmt)
        return Version(source.seq, source.created_ms, b""), document

    # -- timeline --

    async def timeline(
        self, head: DocumentHead, *, before: int | None, limit: int, gap_ms: int, raw: bool
    ) -> dict[str, Any]:
        """A page of the timeline, newest first, and the cursor of the next page."""
        named: dict[int, list[str]] = {}
        for version in await self.db.named_versions(head.id):
            named.setdefault(version.seq, []).append(version.name)
        timeline = Timeline(gap_ms=gap_ms, limit=limit, named=named, raw=raw)
        upto = head.last_seq if before is None else min(before - 1, head.last_seq)
        full = False
        # A raw page needs limit + 1 rows; a grouped one usually many more: start small,
        # grow, so the first page of a long history reads little.
        fetch = limit + 1 if raw else min(_FETCH, 50 * limit)
        while upto > 0 and not full:
            # One row more than folded: its seq tells where the last folded row starts.
            rows = await self.db.timeline_rows(head.id, upto=upto, limit=fetch + 1)
            if not rows:
                break
            more = len(rows) > fetch
            older = rows[fetch][0] if more else 0
            full = not await asyncio.to_thread(timeline.fold, rows[:fetch], older)
            if not more:
                break
            upto = older
            fetch = min(_FETCH, fetch * 2)
        entries = timeline.entries
        return {
            "entries": [entry.to_json() for entry in entries],
            "next": str(entries[-1].first_seq) if full else None,
        }

    # -- diff and blame --

    async def diff(
        self, head: DocumentHead, old: int, new: int, root: str | None
    ) -> dict[str, Any]:
        """What changed in root ``root`` from version ``old`` to version ``new``, and who
        changed it: spans of a text, or the union document of rich text (``doc``)."""
        if old > new:
            raise BadRequest(f"from ({old}) must not be after to ({new})")
        base = await self._source(head, old)
        target = await self._source(head, new)
        steps_source = await self._steps(head, base.seq, target)
        found = await asyncio.to_thread(attribute, base, target, steps_source, root)
        return {
            "root": found.pop("root"),
            "from": {"seq": base.seq, "time": format_ms(base.created_ms)},
            "to": {"seq": target.seq, "time": format_ms(target.created_ms)},
            **found,
        }

    async def blame(self, head: DocumentHead, seq: int, root: str | None) -> dict[str, Any]:
        """Who wrote each span of root ``root`` in version ``seq``: spans of a text, or
        the version of rich text with every run marked (``doc``)."""
        empty = VersionSource(0, head.created_ms, None, 0, [])
        target = await self._source(head, seq)
        steps_source = await self._steps(head, 0, target)
        found = await asyncio.to_thread(attribute, empty, target, steps_source, root)
        out = {"root": found.pop("root"), "seq": target.seq, "time": format_ms(target.created_ms)}
        if "doc" in found:
            return {**out, "authors": found["authors"], "doc": found["doc"]}
        return {**out, "spans": found["spans"]}

    async def _steps(self, head: DocumentHead, after: int, target: VersionSource) -> Steps:
        """What attribution needs between two versions: when one author made every update
        in between, nothing but the two versions; else every row."""
        if target.seq <= after:
            return Steps(None, [])
        authors = await self.db.authors(head.id, after=after, upto=target.seq)
        first = await self.db.rows(head.id, after=after, upto=target.seq, limit=1)
        if len(authors) <= 1:
            who = identity(*next(iter(authors))) if authors else first[0].who
            return Steps(
                Step(who, after + 1, target.seq, first[0].created_ms, target.created_ms, []), []
            )
        return Steps(None, await self.db.rows(head.id, after=after, upto=target.seq))

    # -- restore --

    async def restore(
        self,
        head: DocumentHead,
        seq: int,
        current: bytes | None,
        into: DocumentHead | None = None,
    ) -> tuple[int, bytes]:
        """The change that makes version ``seq`` of ``head`` the current content of
        ``into`` (default: ``head`` itself; another for a version of a retired lineage).

        Args:
            current: the live document's state if its room is loaded (it may hold more
                than the store), else ``None`` to rebuild the newest version.

        Returns:
            The version restored (``seq`` resolved) and the update; empty if nothing
            differs.
        """
        into = head if into is None else into
        target = await self._source(head, seq)
        latest = None if current is not None else await self._source(into, into.last_seq)
        update = await asyncio.to_thread(restore_change, target, latest, current)
        return target.seq, update

    # -- named versions --

    async def named_versions(self, head: DocumentHead) -> list[dict[str, Any]]:
        return [_named_json(v) for v in await self.db.named_versions(head.id)]

    async def add_named_version(
        self, head: DocumentHead, seq: int, name: str, author: str | None
    ) -> dict[str, Any]:
        """Label version ``seq``.

        Raises:
            BadRequest: an empty, too long or control-character name.
            Conflict: the document already has a version with that name.
        """
        name = name.strip()
        if not name or len(name) > _MAX_NAME or has_control_characters(name):
            raise BadRequest(
                f"a version name is 1 to {_MAX_NAME} characters, no control characters"
            )
        source = await self._source(head, seq)
        created = await self.db.add_named_version(head.id, source.seq, name, author)
        if created is None:
            raise Conflict(f"{head.name!r} already has a version named {name!r}")
        return _named_json(created)

    async def delete_named_version(self, head: DocumentHead, version_id: int) -> None:
        if not await self.db.delete_named_version(head.id, version_id):
            raise NotFound(f"no named version {version_id} in {head.name!r}")

    # -- playback --

    async def playback(
        self, head: DocumentHead, old: int, new: int, limit: int, base: bool
    ) -> dict[str, Any]:
        """The updates after version ``old`` up to ``new`` (at most ``limit`` rows), and
        the state of ``old`` to apply them to: a history slider replays them locally."""
        if old > new:
            raise BadRequest(f"from ({old}) must not be after to ({new})")
        start = await self._source(head, old)
        rows = await self.db.rows(head.id, after=start.seq, upto=new, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        result: dict[str, Any] = {"from": start.seq, "time": format_ms(start.created_ms)}
        if base:
            state = await asyncio.to_thread(state_of, start)
            result["base"] = base64.b64encode(state).decode()
        result["updates"] = [
            {
                "seq": row.seq,
                "first_seq": row.first_seq,
                "time": format_ms(row.created_ms),
                "author": row.who,
                "update": base64.b64encode(row.data).decode(),
            }
            for row in rows
        ]
        result["next"] = str(rows[-1].seq) if more else None
        return result

    async def samples(
        self, head: DocumentHead, old: int, new: int, count: int, root: str | None
    ) -> dict[str, Any]:
        """``count`` versions spread evenly from ``old`` to ``new``, each as the text of
        ``root``: a slider's stops, in one request."""
        if old > new:
            raise BadRequest(f"from ({old}) must not be after to ({new})")
        root = await asyncio.to_thread(root_of, await self._source(head, new), root)
        checkpoints = await self.db.checkpoint_seqs(head.id)
        plan: list[tuple[VersionSource | None, list[Row], int]] = []
        at = -1  # the version the thread's document will be at
        for seq in spaced(old, new, count):
            below = max((c for c in checkpoints if c <= seq), default=0)
            if at < 0 or below > at:
                source = await self._source(head, seq)
                plan.append((source, [], source.seq))
                at = source.seq
            else:
                rows = await self.db.rows(head.id, after=at, upto=seq)
                at = rows[-1].seq if rows else at
                plan.append((None, rows, at))
        stops = await asyncio.to_thread(sample, plan, root)
        times = {row.seq: row.created_ms for _, rows, _ in plan for row in rows}
        times.update({s.seq: s.created_ms for s, _, _ in plan if s is not None})
        return {
            "root": root,
            "versions": [
                {"seq": seq, "time": format_ms(times.get(seq, head.created_ms)), "content": text}
                for seq, text in stops
            ],
        }

    # -- storage and compaction --

    async def info(self, head: DocumentHead) -> dict[str, Any]:
        """The document's versions and what its history costs in bytes."""
        storage = await self.db.storage(head.id)
        latest = await self._source(head, head.last_seq)
        size = await asyncio.to_thread(lambda: len(state_of(latest)))
        named = await self.db.named_versions(head.id)
        return {
            "name": head.name,
            "created": format_ms(head.created_ms),
            "seq": head.last_seq,
            "time": format_ms(latest.created_ms),
            "named_versions": len(named),
            "storage": {
                "rows": storage.rows,
                "update_bytes": storage.update_bytes,
                "checkpoints": storage.checkpoints,
                "checkpoint_bytes": storage.checkpoint_bytes,
                "total_bytes": storage.update_bytes + storage.checkpoint_bytes,
                "document_bytes": size,
            },
        }

    async def compact(
        self, head: DocumentHead, policy: compaction.Policy, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Merge old runs of ``head``'s log and thin its checkpoints (see compaction.py).

        Returns:
            What was (or, with ``dry_run``, would be) done and saved.
        """
        checkpoints = await self.db.checkpoint_seqs(head.id)
        before = await self.db.storage(head.id)
        report: dict[str, Any] = {
            "name": head.name,
            "rows_before": before.rows,
            "bytes_before": before.update_bytes + before.checkpoint_bytes,
        }
        if not checkpoints:
            return {
                **report,
                "rows_after": before.rows,
                "bytes_after": report["bytes_before"],
                "runs": 0,
                "checkpoints_dropped": 0,
                "note": "no checkpoint yet",
            }
        newest = checkpoints[-1]
        newer = await self.db.first_seq_after(head.id, now_ms() - policy.older_than_ms)
        horizon = newest if newer is None else min(newest, newer - 1)
        infos = [
            compaction.RowInfo(seq, ms, identity(author, conn), size)
            for seq, ms, author, conn, size in await self.db.row_infos(head.id, newest)
        ]
        named = [v.seq for v in await self.db.named_versions(head.id)]
        plan = compaction.plan(
            infos, horizon=horizon, checkpoints=checkpoints, named=named, policy=policy
        )
        merged_bytes = removed_bytes = 0
        for batch in compaction.batches(plan.runs):
            rows = await self.db.rows(
                head.id, after=batch[0].first_seq - 1, upto=batch[-1].last_seq
            )
            merged = await asyncio.to_thread(compaction.merge_runs, batch, rows)
            merged_bytes += sum(len(m.data) for m in merged)
            removed_bytes += sum(len(r.data) for r in rows)
            if not dry_run and not await self.db.replace_runs(head.id, merged):
                raise Conflict(f"{head.name!r} changed during compaction (another compaction?)")
        dropped_bytes = 0
        if plan.drop_checkpoints and not dry_run:
            await self.db.drop_checkpoints(head.id, plan.drop_checkpoints)
        if dry_run:
            # Checkpoints are of similar size: estimate from the average.
            average = before.checkpoint_bytes // max(1, before.checkpoints)
            dropped_bytes = average * len(plan.drop_checkpoints)
            rows_after = before.rows - sum(run.rows - 1 for run in plan.runs)
            bytes_after = report["bytes_before"] - removed_bytes + merged_bytes - dropped_bytes
        else:
            after = await self.db.storage(head.id)
            rows_after = after.rows
            bytes_after = after.update_bytes + after.checkpoint_bytes
            if not plan.empty:
                await self.db.record_compaction(
                    head.id,
                    upto_seq=horizon,
                    granularity_ms=policy.granularity_ms,
                    rows_before=before.rows,
                    rows_after=rows_after,
                    bytes_before=report["bytes_before"],
                    bytes_after=bytes_after,
                )
        return {
            **report,
            "rows_after": rows_after,
            "bytes_after": bytes_after,
            "runs": len(plan.runs),
            "checkpoints_dropped": len(plan.drop_checkpoints),
            "upto_seq": horizon,
        }


def _named_json(version: NamedVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "name": version.name,
        "seq": version.seq,
        "created": format_ms(version.created_ms),
        "author": version.author,
    }
