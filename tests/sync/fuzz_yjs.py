"""A seeded fuzzer for ``collab.sync.validator``: what passes it must not crash yrs.

Not a test file (``tests/sync/test_validator.py`` runs it briefly); run it longer with
``python -m tests.sync.fuzz_yjs --seed 1 --count 100000``. The parent builds realistic updates
from pycrdt documents (Text with formatting and embeds, Array, Map, XML, nested types,
subdocuments, two clients editing concurrently), mutates them (bit flips, byte insertion and
deletion, varints replaced by boundary values, client ids swapped, splices, truncation),
and sends every input ``check_update`` accepts to a child process, which makes the calls
the server makes on client data. Panics come back as messages; a segfault or abort kills
the child, which the parent notices, records with the input that did it, and restarts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import pycrdt

from collab.errors import ProtocolError
from collab.sync.validator import check_state_vector, check_update

__all__ = ["Finding", "Report", "corpus", "fuzz", "mutate"]

_UPDATE, _STATE, _BASE, _RESET = b"U", b"S", b"B", b"R"
_SESSION = 16  # updates applied one after the other to the same document
_HANG_SECONDS = 30.0
# Set to apply updates whatever their dependencies: to replay findings from before
# ``check_update`` took the document's state, or to see what that check prevents.
_RAW = bool(os.environ.get("COLLAB_FUZZ_RAW"))

_BOUNDARIES = (
    0,
    1,
    2,
    126,
    127,
    128,
    255,
    16383,
    16384,
    2**31 - 2,
    2**31 - 1,
    2**31,
    2**31 + 1,
    2**32 - 1,
    2**32,
    2**32 + 1,
    2**53 - 1,
    2**53,
)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --- realistic updates ---------------------------------------------------------------------


def _doc(rng: random.Random) -> pycrdt.Doc[Any]:
    """A document whose client id comes from ``rng``, so a seed replays exactly."""
    return pycrdt.Doc(client_id=rng.randrange(2**53))


def _subdoc(rng: random.Random) -> pycrdt.Doc[Any]:
    return pycrdt.Doc(client_id=rng.randrange(2**53), guid=f"{rng.randrange(2**64):x}")


def _edit(rng: random.Random, doc: pycrdt.Doc[Any]) -> None:
    text = doc.get("text", type=pycrdt.Text)
    array = doc.get("array", type=pycrdt.Array)
    map_ = doc.get("map", type=pycrdt.Map)
    xml = doc.get("xml", type=pycrdt.XmlFragment)
    kind = rng.randrange(13)
    if kind <= 3:
        pos = rng.randint(0, len(text))
        text.insert(pos, rng.choice(["a", "hello ", "x" * rng.randint(1, 40)]))
    elif kind == 12:
        # Non-ASCII only where nothing deletes or formats: pycrdt's own index arithmetic
        # panics on ranges that end inside a multi-byte character.
        intl = doc.get("intl", type=pycrdt.Text)
        intl.insert(0, rng.choice(["é", "€", "日本", "ключ"]))
    elif kind == 4 and len(text):
        start = rng.randrange(len(text))
        del text[start : min(len(text), start + rng.randint(1, 5))]
    elif kind == 5 and len(text):
        start = rng.randrange(len(text))
        stop = min(len(text), start + rng.randint(1, 5))
        text.format(start, stop, rng.choice([{"bold": True}, {"bold": None}, {"href": "u"}]))
    elif kind == 6:
        text.insert_embed(rng.randint(0, len(text)), {"image": "p.png"}, {"w": 3})
    elif kind == 7:
        value = rng.choice(
            [
                1,
                -7,
                2.5,
                None,
                True,
                "s",
                b"\x00\xff",
                [1, [2, {"k": "v"}]],
                {"a": {"b": [None]}},
                2**40,
            ]
        )
        array.insert(rng.randint(0, len(array)), value)
    elif kind == 8:
        if len(array) and rng.random() < 0.4:
            del array[rng.randrange(len(array))]
        else:
            nested: Any = rng.choice(
                [pycrdt.Map({"k": 1}), pycrdt.Text("nested"), pycrdt.Array([1, 2])]
            )
            array.append(nested)
    elif kind == 9:
        key = rng.choice(["a", "b", "c", "ключ"])
        if key in map_ and rng.random() < 0.3:
            del map_[key]
        else:
            map_[key] = rng.choice([1, "v", [1, 2], {"x": 1}, pycrdt.Text("t"), _subdoc(rng)])
    elif kind == 10:
        xml.children.append(
            pycrdt.XmlElement("p", {"class": "c"}, [pycrdt.XmlText("para")])
            if rng.random() < 0.7
            else pycrdt.XmlText("loose")
        )
    elif len(xml.children):
        child = xml.children[rng.randrange(len(xml.children))]
        if isinstance(child, pycrdt.XmlElement):
            child.attributes["data-n"] = str(rng.randrange(100))
        elif isinstance(child, pycrdt.XmlText):
            child.insert(0, "t")


def corpus(rng: random.Random, edits: int = 60) -> tuple[list[bytes], bytes]:
    """Updates two concurrently editing clients produce, and a base document's state.

    Returns:
        The incremental updates, full states, diffs and merges seen, and the update of a
        third document that holds content before any input is applied to it.
    """
    docs: list[pycrdt.Doc[Any]] = [_doc(rng) for _ in range(2)]
    out: list[bytes] = []
    for doc in docs:
        doc.observe(lambda event: out.append(event.update))
    # The base is what both clients had a third of the way in, so most later updates
    # apply to it (rather than waiting for dependencies it lacks); a third client's edits
    # make it differ from both.
    base = _doc(rng)
    base_rng = random.Random(rng.random())
    for _ in range(10):
        _edit(base_rng, base)
    for i in range(edits):
        doc = rng.choice(docs)
        _edit(rng, doc)
        if rng.random() < 0.2 or i == edits // 3:  # sync: cross-client origins
            a, b = docs
            a.apply_update(b.get_update(a.get_state()))
            b.apply_update(a.get_update(b.get_state()))
        if i == edits // 3:
            base.apply_update(docs[0].get_update(base.get_state()))
    for doc in docs:
        out.append(doc.get_update())
        out.append(doc.get_update(docs[0].get_state()))
    out.append(pycrdt.merge_updates(*rng.sample(out, min(5, len(out)))))
    # Astral characters (two UTF-16 units), likewise never edited.
    astral = _doc(rng)
    astral["text"] = pycrdt.Text("a😀b🎉")
    out.append(astral.get_update())
    return out, base.get_update()


# --- mutations -----------------------------------------------------------------------------


def _varint_spans(data: bytes) -> list[tuple[int, int]]:
    spans, pos = [], 0
    while pos < len(data):
        end = pos
        while end < len(data) and data[end] & 0x80:
            end += 1
        spans.append((pos, min(end + 1, len(data))))
        pos = end + 1
    return spans


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to three random mutations of ``data`` (``pool`` supplies splices and client ids)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.randrange(9)
        if not buf:
            buf = bytearray(rng.choice(pool))
        pos = rng.randrange(len(buf))
        if kind == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:
            buf.insert(pos, rng.randrange(256))
        elif kind == 3:
            del buf[pos : pos + rng.randint(1, 3)]
        elif kind in (4, 5):  # a varint replaced: boundaries, or a nearby small value
            start, end = rng.choice(_varint_spans(bytes(buf)))
            old = int.from_bytes(buf[start:end], "little") & 0x7F if end > start else 0
            value = rng.choice(_BOUNDARIES) if kind == 4 else max(0, old + rng.randint(-3, 3))
            buf[start:end] = _varint(value)
        elif kind == 6:  # another client's id (same length, so the framing survives)
            other = rng.choice(pool)
            if len(other) > 10 and len(buf) > pos + 8:
                take = rng.randrange(2, len(other) - 8)
                buf[pos : pos + 8] = other[take : take + 8]
        elif kind == 7:
            other = rng.choice(pool)
            buf = buf[:pos] + other[rng.randrange(len(other)) :]
        else:
            buf = buf[: rng.randrange(len(buf))]
    return bytes(buf)


# --- structure-aware mutations --------------------------------------------------------------
# Byte mutations mostly break the framing, which the validator refuses; these re-encode a
# parsed update with its ids, parents, contents and deletions rearranged, so the result is
# well formed and the document semantics are what is tested.

Id = tuple[int, int]


@dataclass
class _Struct:
    info: int
    length: int = 1  # GC and Skip: their length; items: computed by the validator only
    origin: Id | None = None
    right: Id | None = None
    parent: str | Id | None = None  # a root name, an item id, or None (copied from origins)
    sub: str | None = None
    content: bytes = b""  # everything after the parent sub, as read


@dataclass
class _Update:
    sections: list[tuple[int, int, list[_Struct]]]  # client, first clock, structs
    deletes: list[tuple[int, list[tuple[int, int]]]]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def string(self) -> str:
        n = self.uint()
        self.pos += n
        return self.data[self.pos - n : self.pos].decode()

    def skip_any(self) -> None:
        tag = self.data[self.pos]
        self.pos += 1
        if tag == 125:
            while self.data[self.pos] & 0x80:
                self.pos += 1
            self.pos += 1
        else:
            self.pos += {124: 4, 123: 8, 122: 8}.get(tag, 0)
        if tag in (119, 116):
            n = self.uint()  # not ``self.pos += self.uint()``: that reads pos first
            self.pos += n
        elif tag == 118:
            for _ in range(self.uint()):
                self.string()
                self.skip_any()
        elif tag == 117:
            for _ in range(self.uint()):
                self.skip_any()


def _parse(data: bytes) -> _Update:
    """Parse an update the validator accepted (anything else may raise)."""
    r = _Reader(data)
    sections = []
    for _ in range(r.uint()):
        n, client, clock = r.uint(), r.uint(), r.uint()
        structs = []
        for _ in range(n):
            info = data[r.pos]
            r.pos += 1
            if info in (0, 10):
                structs.append(_Struct(info, r.uint()))
                continue
            item = _Struct(info)
            if info & 0x80:
                item.origin = (r.uint(), r.uint())
            if info & 0x40:
                item.right = (r.uint(), r.uint())
            if not info & 0xC0:
                item.parent = r.string() if r.uint() == 1 else (r.uint(), r.uint())
                if info & 0x20:
                    item.sub = r.string()
            start, ref = r.pos, info & 0x1F
            if ref in (1, 8):
                count = r.uint()
                for _ in range(count if ref == 8 else 0):
                    r.skip_any()
            elif ref in (3, 4, 5):  # binary, string, embed: length-prefixed bytes
                n = r.uint()
                r.pos += n
            elif ref == 6:
                r.string()
                r.string()
            elif ref == 7:
                if data[r.pos] == 3:
                    r.pos += 1
                    r.string()
                else:
                    r.pos += 1
            elif ref == 9:
                r.string()
                r.skip_any()
            item.content = data[start : r.pos]
            structs.append(item)
        sections.append((client, clock, structs))
    deletes = []
    for _ in range(r.uint()):
        client = r.uint()
        deletes.append((client, [(r.uint(), r.uint()) for _ in range(r.uint())]))
    return _Update(sections, deletes)


def _encode(update: _Update) -> bytes:
    out = bytearray(_varint(len(update.sections)))
    for client, clock, structs in update.sections:
        out += _varint(len(structs)) + _varint(client) + _varint(clock)
        for st in structs:
            info = st.info & 0x1F if st.info not in (0, 10) else st.info
            if st.info in (0, 10):
                out += bytes([st.info]) + _varint(st.length)
                continue
            info |= (0x80 if st.origin else 0) | (0x40 if st.right else 0)
            if info & 0xC0:  # yjs sets the parent-sub bit even when it writes no key
                info |= st.info & 0x20
            elif st.sub is not None:
                info |= 0x20
            out.append(info)
            for ref in (st.origin, st.right):
                if ref:
                    out += _varint(ref[0]) + _varint(ref[1])
            if not info & 0xC0:
                if isinstance(st.parent, str):
                    name = st.parent.encode()
                    out += b"\x01" + _varint(len(name)) + name
                else:
                    parent = st.parent or (0, 0)
                    out += b"\x00" + _varint(parent[0]) + _varint(parent[1])
                if st.sub is not None:
                    sub = st.sub.encode()
                    out += _varint(len(sub)) + sub
            out += st.content
    out += _varint(len(update.deletes))
    for client, ranges in update.deletes:
        out += _varint(client) + _varint(len(ranges))
        for clock, length in ranges:
            out += _varint(clock) + _varint(length)
    return bytes(out)


_ROOTS = ("text", "array", "map", "xml", "intl", "other")


def mutate_structure(rng: random.Random, data: bytes, pool: list[_Update]) -> bytes:
    """Re-encode ``data`` (a valid update) with one to three structural changes."""
    update = _parse(data)
    donor = rng.choice(pool)
    clients = [c for c, _, _ in update.sections + donor.sections] or [1]
    all_structs = [st for _, _, sts in update.sections + donor.sections for st in sts]

    def some_id() -> Id:
        return rng.choice(clients), rng.choice((0, 1, 2, 3, rng.randrange(64), 2**31 - 2))

    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.randrange(12)
        structs = [st for _, _, sts in update.sections for st in sts]
        st = rng.choice(structs) if structs else None
        if kind == 0 and update.sections:  # move a section to another client or clock
            i = rng.randrange(len(update.sections))
            client, clock, sts = update.sections[i]
            if rng.random() < 0.5:
                client = rng.choice(clients)
            else:
                clock = max(0, clock + rng.choice((-2, -1, 1, 2, 10, rng.randrange(100))))
            update.sections[i] = (client, clock, sts)
        elif kind == 1 and st is not None and st.info not in (0, 10):
            st.origin = rng.choice((None, some_id()))
        elif kind == 2 and st is not None and st.info not in (0, 10):
            st.right = rng.choice((None, some_id()))
        elif kind == 3 and st is not None and st.info not in (0, 10):
            st.origin = st.right = None
            st.parent = rng.choice(_ROOTS) if rng.random() < 0.5 else some_id()
            st.sub = rng.choice((None, None, "a", "k"))
        elif kind == 4 and st is not None and all_structs:  # another struct's content
            other = rng.choice(all_structs)
            st.info, st.content, st.length = other.info, other.content, other.length
        elif kind == 5 and update.sections:  # drop, duplicate or swap structs
            _, _, sts = rng.choice(update.sections)
            if len(sts) > 1:
                i, j = rng.randrange(len(sts)), rng.randrange(len(sts))
                choice = rng.randrange(3)
                if choice == 0:
                    del sts[i]
                elif choice == 1:
                    sts.insert(i, _Struct(**vars(sts[j])))
                else:
                    sts[i], sts[j] = sts[j], sts[i]
        elif kind == 6 and donor.sections:  # a section from another update
            update.sections.append(rng.choice(donor.sections))
        elif kind == 7:  # deletions anywhere
            ranges = sorted(
                {(rng.randrange(80), rng.randint(1, 20)) for _ in range(rng.randint(1, 4))}
            )
            merged: list[tuple[int, int]] = []
            for clock, length in ranges:
                if not merged or clock >= merged[-1][0] + merged[-1][1]:
                    merged.append((clock, length))
            client = rng.choice(clients)
            update.deletes = [(c, r) for c, r in update.deletes if c != client]
            update.deletes.append((client, merged))
        elif kind == 8:
            update.deletes = donor.deletes + [
                d for d in update.deletes if d[0] not in {c for c, _ in donor.deletes}
            ]
        elif kind == 9 and st is not None and st.info in (0, 10):
            st.length = rng.choice((1, 2, 5, 100, 2**31 - 100))
        elif kind == 10 and st is not None and st.info not in (0, 10):
            st.info, st.content = rng.choice(
                [
                    (1, _varint(rng.choice((1, 3, 50)))),  # deleted
                    (4, b"\x02ab"),
                    (4, b"\x04\xf0\x9f\x98\x80"),  # one astral character
                    (7, bytes([rng.choice((0, 1, 2, 4, 6))])),  # a type
                    (7, b"\x03\x01p"),
                    (8, b"\x02\x7d\x01\x77\x01x"),
                    (5, b"\x02{}"),
                    (6, b"\x04bold\x04true"),
                    (3, b"\x01\x00"),
                    (9, b"\x01g\x76\x00"),
                ]
            )
        elif kind == 11:
            update.sections.sort(key=lambda s: rng.random())
    return _encode(update)


# --- the child: the server's calls ---------------------------------------------------------


def _child() -> None:
    """Read framed inputs on stdin, apply them, answer one line per input on stdout."""
    stdin: BinaryIO = sys.stdin.buffer
    stdout: BinaryIO = sys.stdout.buffer
    base = b"\x00\x00"
    session: pycrdt.Doc[Any] | None = None
    while True:
        header = stdin.read(5)
        if len(header) < 5:
            return
        kind, size = header[:1], struct.unpack(">I", header[1:])[0]
        data = stdin.read(size)
        if kind == _BASE:
            base, session = data, None
            continue
        if kind == _RESET:
            session = None
            continue
        if session is None:
            session = pycrdt.Doc()
            session.apply_update(base)
        runtime_errors: list[str] = []
        try:
            if kind == _UPDATE:
                outcome = _server_calls(base, data, session, runtime_errors)
            else:
                doc: pycrdt.Doc[Any] = pycrdt.Doc()
                doc.apply_update(base)
                doc.get_update(data)
                session.get_update(data)
                outcome = "ok"
            answer = outcome.encode()
            if runtime_errors:
                answer = b"runtime " + runtime_errors[0].encode("utf-8", "replace")
        except ValueError:
            answer = b"error"
        except BaseException as exc:  # noqa: BLE001 - PanicException is what we hunt
            name = "panic" if type(exc).__name__ == "PanicException" else type(exc).__name__
            answer = f"{name} {exc}".encode("utf-8", "replace").replace(b"\n", b" ")
            session = None  # maybe poisoned
        stdout.write(answer + b"\n")
        stdout.flush()


def _server_calls(
    base: bytes, update: bytes, session: pycrdt.Doc[Any], runtime_errors: list[str]
) -> str:
    """The calls the server makes with a client's update: "ok", "error" or "pending".

    As Room: filter a SyncStep2 against the state, apply, answer state vectors, checkpoint;
    as compaction: merge; as a reload from the store: a fresh document from the checkpoint.
    Each step runs even when an earlier one refused the update, so each is exercised. An
    update is applied to a document only if ``check_update`` with that document's state
    accepts it, as the server does.
    """
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(base)
    state = doc.get_state()
    steps: list[Callable[[], object]] = [
        lambda: pycrdt.get_update(update, doc.get_state()),
        lambda: pycrdt.merge_updates(base, update),
    ]
    outcome = "ok"
    for target, target_steps in (
        (
            doc,
            [
                lambda: doc.apply_update(update),
                doc.get_state,
                lambda: pycrdt.Doc().apply_update(doc.get_update()),
                lambda: doc.get_update(state),
            ],
        ),
        (
            session,
            [
                lambda: session.apply_update(update),
                lambda: session.get_update(session.get_state()),
            ],
        ),
    ):
        try:
            if not _RAW:
                check_update(update, target.get_state())
        except ProtocolError:
            outcome = "pending"
        else:
            steps += target_steps
    for step in steps:
        try:
            step()
        except ValueError:
            outcome = "error"
        except RuntimeError as exc:
            # yrs's semantic refusals (a parent that is not a type, ...) surface as
            # RuntimeError, not ValueError: worth counting, as the server must catch them.
            runtime_errors.append(str(exc))
            outcome = "error"
    return outcome


# --- the parent ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """An input the validator accepted that made yrs panic, crash or hang."""

    kind: str  # "panic", "crash", "hang", or the name of another exception
    detail: str  # the panic message or the child's exit status
    data: bytes
    base: bytes  # the document the input was applied to
    is_state_vector: bool = False
    history: tuple[bytes, ...] = ()  # updates applied to the session document before it


@dataclass
class Report:
    """Counts of one fuzzing run."""

    generated: int = 0
    accepted: int = 0
    rejected_by_yrs: int = 0
    pending: int = 0  # refused for one document at least: it lacks their dependencies
    slow: int = 0  # timed out once, but answered when replayed alone
    runtime_errors: dict[str, int] = field(default_factory=dict)  # by message, digits as N
    findings: list[Finding] = field(default_factory=list)


class _Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sync.fuzz_yjs", "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Rust prints every panic there
        )
        self.base = b""

    def send(self, kind: bytes, data: bytes) -> str | None:
        """Send one input; returns the answer, or None when the child died or hung."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(kind + struct.pack(">I", len(data)) + data)
            stdin.flush()
        except BrokenPipeError:
            return None
        if kind == _BASE or kind == _RESET:
            return ""
        ready, _, _ = select.select([stdout], [], [], _HANG_SECONDS)
        if not ready:
            return None
        line = stdout.readline()
        return line.decode("utf-8", "replace").strip() if line else None

    def status(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return "hang"
        return f"exit status {code}"

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # it died
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def restart(self) -> _Child:
        """A new child in place of this dead one."""
        self.close()
        return _Child()


def _inputs(rng: random.Random, count: int) -> Iterator[tuple[bytes, bytes, bytes]]:
    """Yield ``(kind, data, base)`` mutated inputs, with a fresh corpus now and then."""
    pool, base = corpus(rng)
    parsed = [_parse(update) for update in pool]
    states = [pycrdt.Doc().get_state()]
    for i in range(count):
        if i and i % 5000 == 0:
            pool, base = corpus(rng)
            parsed = [_parse(update) for update in pool]
        if rng.random() < 0.5:
            data = mutate_structure(rng, rng.choice(pool), parsed)
            if rng.random() < 0.2:
                data = mutate(rng, data, pool)
            yield _UPDATE, data, base
        elif rng.random() < 0.05:
            doc = _doc(rng)
            doc.apply_update(rng.choice(pool))
            states.append(doc.get_state())
            yield _STATE, mutate(rng, rng.choice(states), pool), base
        else:
            yield _UPDATE, mutate(rng, rng.choice(pool), pool), base


def fuzz(
    seed: int,
    count: int,
    deadline: float | None = None,
    on_finding: Callable[[Finding], None] | None = None,
) -> Report:
    """Mutate ``count`` inputs from ``seed``; apply those the validator accepts in a child.

    Args:
        seed: makes the run reproducible.
        count: mutated inputs to generate (accepted or not).
        deadline: a ``time.monotonic()`` value after which the run stops early.
        on_finding: called with each finding as it happens.
    """
    rng = random.Random(seed)
    report = Report()
    history: list[bytes] = []
    child = _Child()
    try:
        for kind, data, base in _inputs(rng, count):
            if deadline is not None and time.monotonic() > deadline:
                break
            report.generated += 1
            try:
                (check_update if kind == _UPDATE else check_state_vector)(data)
            except ProtocolError:
                continue
            report.accepted += 1
            if child.base != base:
                child.send(_BASE, base)
                child.base = base
                history.clear()
            elif len(history) >= _SESSION:
                child.send(_RESET, b"")
                history.clear()
            answer = child.send(kind, data)
            if answer in ("ok", "error", "pending"):
                report.rejected_by_yrs += answer == "error"
                report.pending += answer == "pending"
                if kind == _UPDATE:
                    history.append(data)
                continue
            if answer is not None and answer.startswith("runtime "):
                report.rejected_by_yrs += 1
                reason = re.sub(r"<[^>]*>|\d+", "N", answer[8:])
                report.runtime_errors[reason] = report.runtime_errors.get(reason, 0) + 1
                if kind == _UPDATE:
                    history.append(data)
                continue
            if answer is None:
                finding = Finding(
                    "crash", child.status(), data, base, kind == _STATE, tuple(history)
                )
                child = child.restart()
            else:
                name, _, detail = answer.partition(" ")
                finding = Finding(name, detail, data, base, kind == _STATE, tuple(history))
            history.clear()  # the child starts a new session after a panic or crash
            if finding.detail == "hang" and replay(finding) != "crash":
                # Under load (2 cores shared with other runs) a slow answer can pass for a
                # hang; one that does not hang again on its own is counted, not reported.
                report.slow += 1
                continue
            report.findings.append(finding)
            if on_finding is not None:
                on_finding(finding)
    finally:
        child.close()
    return report


def _outcome(child: _Child, finding: Finding) -> tuple[_Child, str]:
    """Replay a finding in ``child``: "ok", "error", "panic ..." or "crash" (a new child)."""
    child.send(_BASE, finding.base)
    child.base = finding.base
    for before in finding.history:
        if child.send(_UPDATE, before) is None:
            return child.restart(), "crash"
    answer = child.send(_STATE if finding.is_state_vector else _UPDATE, finding.data)
    child.send(_RESET, b"")
    if answer is None:
        return child.restart(), "crash"
    return child, answer.split(" ")[0]


def _part(finding: Finding, target: int) -> bytes:
    if target == -2:
        return finding.data
    if target == -1:
        return finding.base
    return finding.history[target]


def _with_part(finding: Finding, target: int, data: bytes) -> Finding:
    if target == -2:
        return replace(finding, data=data)
    if target == -1:
        return replace(finding, base=data)
    history = list(finding.history)
    history[target] = data
    return replace(finding, history=tuple(history))


def _struct_length(st: _Struct) -> int:
    if st.info in (0, 10):
        return st.length
    ref = st.info & 0x1F
    if ref in (1, 8):
        return _Reader(st.content).uint()
    if ref == 4:
        return len(_Reader(st.content).string().encode("utf-16-le")) // 2
    return 1


def _simpler(data: bytes) -> Iterator[bytes]:
    """Smaller variants of an update: a section, struct or deletion fewer."""
    try:
        update = _parse(data)
    except (IndexError, UnicodeDecodeError):
        return
    for i in range(len(update.sections)):
        yield _encode(replace(update, sections=update.sections[:i] + update.sections[i + 1 :]))
    for i in range(len(update.deletes)):
        yield _encode(replace(update, deletes=update.deletes[:i] + update.deletes[i + 1 :]))
    for i, (client, clock, structs) in enumerate(update.sections):
        for j, st in enumerate(structs):
            sections = list(update.sections)
            if j == 0 or j == len(structs) - 1:  # trim the section
                rest = structs[1:] if j == 0 else structs[:-1]
                start = clock + (_struct_length(st) if j == 0 else 0)
                sections[i] = (client, start, rest)
                if not rest:
                    del sections[i]
            elif st.info != 0:  # collected in the middle: a GC keeps later clocks
                rest = list(structs)
                rest[j] = _Struct(0, _struct_length(st))
                sections[i] = (client, clock, rest)
            else:
                continue
            yield _encode(replace(update, sections=sections))


def minimize(finding: Finding, tries: int = 2000) -> Finding:
    """A smaller finding of the same kind: fewer earlier updates, sections, structs.

    Every candidate must still pass the validator (a finding is only one if it does).
    """
    child = _Child()
    try:
        child, want = _outcome(child, finding)
        if want in ("ok", "error", "runtime"):
            return finding  # not reproducible on its own

        def same(candidate: Finding) -> bool:
            nonlocal child, tries
            tries -= 1
            check = check_state_vector if candidate.is_state_vector else check_update
            try:
                check(candidate.data)
                check_update(candidate.base)
                for before in candidate.history:
                    check_update(before)
            except ProtocolError:
                return False
            # A fresh child each time: heap corruption left by an earlier candidate would make
            # the outcome depend on the order of the tries.
            child = child.restart()
            child, got = _outcome(child, candidate)
            return got == want

        best = finding
        shrunk = True
        while shrunk and tries > 0:
            shrunk = False
            for i in reversed(range(len(best.history))):
                if i < len(best.history):
                    candidate = replace(best, history=best.history[:i] + best.history[i + 1 :])
                    if same(candidate):
                        best, shrunk = candidate, True
            targets = [-2, -1, *range(len(best.history))]
            for target in targets:
                progress = True
                while progress and tries > 0:
                    progress = False
                    for smaller in _simpler(_part(best, target)):
                        if tries <= 0:
                            break
                        candidate = _with_part(best, target, smaller)
                        if same(candidate):
                            best, progress, shrunk = candidate, True, True
                            break
        return best
    finally:
        child.close()


def load(path: str) -> list[Finding]:
    """The findings a run wrote with ``--out``."""
    with open(path) as lines:
        return [
            Finding(
                r["kind"],
                r["detail"],
                bytes.fromhex(r["data"]),
                bytes.fromhex(r["base"]),
                r["state_vector"],
                tuple(bytes.fromhex(h) for h in r["history"]),
            )
            for r in map(json.loads, lines)
        ]


def replay(finding: Finding) -> str:
    """What ``finding`` does now in a fresh child: "ok", "error", "panic", "crash", ..."""
    child = _Child()
    try:
        child, outcome = _outcome(child, finding)
        return outcome
    finally:
        child.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--verbose", action="store_true", help="print the base document too")
    parser.add_argument("--minimize", action="store_true", help="shrink each finding")
    parser.add_argument("--out", help="append each finding to this file as a JSON line")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child()
        return
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    started = time.monotonic()

    def show(finding: Finding) -> None:
        if args.minimize:
            finding = minimize(finding)
        label = "state vector" if finding.is_state_vector else "update"
        if args.out:
            with open(args.out, "a") as out:
                record = {
                    "kind": finding.kind,
                    "detail": finding.detail,
                    "data": finding.data.hex(),
                    "base": finding.base.hex(),
                    "state_vector": finding.is_state_vector,
                    "history": [before.hex() for before in finding.history],
                }
                out.write(json.dumps(record) + "\n")
        print(f"{finding.kind}: {finding.detail} ({label}) {finding.data.hex()}", flush=True)
        if args.verbose or args.minimize:
            print(f"  base {finding.base.hex()}", flush=True)
            for before in finding.history:
                print(f"  after {before.hex()}", flush=True)

    report = fuzz(args.seed, args.count, deadline, show)
    print(
        f"seed {args.seed}: {report.generated} inputs, {report.accepted} accepted by the "
        f"validator, {report.pending} with missing dependencies for at least one document, "
        f"{report.rejected_by_yrs} refused by yrs, "
        f"{len(report.findings)} panics or crashes ({report.slow} slow answers that did not "
        f"hang again), {time.monotonic() - started:.1f} s"
    )
    for reason, n in sorted(report.runtime_errors.items()):
        print(f"  RuntimeError x{n}: {reason}")
    sys.exit(1 if report.findings else 0)


if __name__ == "__main__":
    main()
