"""Applying a relayed update to a room's document in one Yrs transaction.

PURE: no I/O, no asyncio. The only module that uses pycrdt's private API.

Why: ``Room`` touches its document twice per relayed update. It first asks which of the
update's structs the document lacks, to drop echoes (see ``known``), then applies it.
Through pycrdt's public API that is two transactions, and most of their cost is pycrdt's
Python wrapper (``Doc.transaction`` and ``Transaction.__enter__``/``__exit__``: origin
bookkeeping, the multithreading lock, observer exception groups), not Yrs.
``apply_unless_known`` does both steps in one transaction opened on pycrdt's Rust document,
which more than halves the CPU of the relay's document work (about 4.5 µs to 2 µs per
keystroke update on a 20,000-keystroke document). ``state_of`` and ``update_of`` read the
state vector and a diff the same way: a join asks for them several times.

What it relies on, in pycrdt 0.14 (pinned ``<0.15`` in pyproject.toml); if any of it is
missing when this module is imported, every call takes the public path instead:

- ``Doc._doc``, the Rust document: ``create_transaction()`` (a read-write transaction;
  ``RuntimeError`` while another one is open), ``get_state(txn)``,
  ``get_update(txn, state)`` and ``apply_update(txn, update)``, which raises ``ValueError``
  for an update it cannot decode before it touches the document. These are exactly the
  calls the public ``Doc.get_state``, ``Doc.get_update`` and ``Doc.apply_update`` make.
- The Rust ``Transaction``'s ``commit()`` then ``drop()``, which is how pycrdt's
  ``Transaction.__exit__`` ends every read-write transaction, after an error too; after
  the commit it raises the exceptions its observer callbacks collected in
  ``Doc._exceptions`` as one ``ExceptionGroup``, which this module does the same way.
- ``Doc._txn``, pycrdt's open transaction (``None`` when there is none). While one is open
  the public methods reuse it; so does this module, by taking the public path.
- ``Doc._allow_multithreading`` and ``Doc._Model``: documents with either set take the
  public path, where pycrdt takes its lock or validates the pydantic model. A room's
  document has neither (``history.replay`` makes a plain ``Doc``).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, get_update

__all__ = ["apply_unless_known", "is_panic", "known", "state_of", "update_of"]


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic that pycrdt let through.

    pyo3 turns a panic inside yrs into ``pyo3_runtime.PanicException``, a
    ``BaseException`` (so ``except Exception`` misses it) of a module that is never
    importable by name: it is recognised by its type's name and module. A document that
    panicked may be half-changed and usually panics again on every later call, so the
    caller must throw it away (``Hub`` reloads the room from the store).
    """
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def known(doc: Doc[Any], update: bytes) -> bool:
    """Whether ``update`` carries structs and ``doc`` has every one of them (an echo).

    Some clients (pycrdt's ``Provider``) send back every update they receive. An update
    whose structs wait for missing dependencies is *not* an echo: ``get_update`` keeps
    them. An update without structs (a delete set only) is never an echo either.

    Raises:
        ValueError: ``update`` is not a valid Yjs update.
    """
    # The first varint of a v1 update counts the clients that have structs in it.
    return update[0] != 0 and get_update(update, doc.get_state())[0] == 0


def _apply_public(doc: Doc[Any], update: bytes) -> bool:
    if known(doc, update):
        return False
    doc.apply_update(update)
    return True


def _apply_raw(doc: Doc[Any], update: bytes) -> bool:
    # The same calls as _apply_public, in one transaction on the Rust document.
    check = update[0] != 0  # as in known(); before the transaction, so nothing is open
    raw = doc._doc
    txn = raw.create_transaction()
    try:
        if check and get_update(update, raw.get_state(txn))[0] == 0:
            return False
        raw.apply_update(txn, update)
        return True
    finally:
        _end(doc, txn)


def _read_raw(doc: Doc[Any], state: bytes | None) -> bytes:
    # Doc.get_state() (state None) or Doc.get_update(state), on the Rust document.
    raw = doc._doc
    txn = raw.create_transaction()
    try:
        return raw.get_state(txn) if state is None else raw.get_update(txn, state)
    finally:
        _end(doc, txn)


def _end(doc: Doc[Any], txn: Any) -> None:
    # As pycrdt's Transaction.__exit__: commit (observers run), drop the transaction
    # whatever happens (the document stays usable after a bad update), then report
    # what observers raised.
    try:
        txn.commit()
    finally:
        txn.drop()
    if doc._exceptions:
        exceptions = tuple(doc._exceptions)
        doc._exceptions.clear()
        raise ExceptionGroup("Observer callback error", exceptions)


def _raw_ok(doc: Doc[Any]) -> bool:
    """Whether ``doc`` may take the raw path: the API is there, no pycrdt transaction is
    open, and pycrdt would take no lock and validate no model."""
    return _RAW and doc._txn is None and not doc._allow_multithreading and doc._Model is None


def _raw_api_available() -> bool:
    """Whether this pycrdt has everything ``_apply_raw`` uses (see the module docstring)."""
    try:
        doc: Doc[Any] = Doc()
        if doc._txn is not None or doc._allow_multithreading or doc._Model is not None:
            return False
        if doc._exceptions:
            return False
        return (
            _apply_raw(doc, b"\x00\x00")
            and doc.get_state() == b"\x00"
            and _read_raw(doc, None) == b"\x00"
            and _read_raw(doc, b"\x00") == doc.get_update()
        )
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return False


_RAW = _raw_api_available()


def apply_unless_known(doc: Doc[Any], update: bytes) -> bool:
    """Apply ``update`` to ``doc`` unless it is an echo (see ``known``).

    Equivalent to ``if not known(doc, update): doc.apply_update(update)``, in one
    transaction when possible. Structs whose dependencies are missing are kept pending by
    Yrs, as ``Doc.apply_update`` does.

    Returns:
        Whether the update was applied (``False``: an echo, nothing changed).

    Raises:
        ValueError: ``update`` is not a valid Yjs update; nothing was applied.
        IndexError: ``update`` is empty (as ``known`` and ``Room`` always did).
    """
    if _raw_ok(doc):
        return _apply_raw(doc, update)
    return _apply_public(doc, update)


def state_of(doc: Doc[Any]) -> bytes:
    """``doc.get_state()`` (its state vector), in one transaction on the Rust document
    when possible: a join to a new room asks for it four times."""
    if _raw_ok(doc):
        return _read_raw(doc, None)
    return doc.get_state()


def update_of(doc: Doc[Any], state: bytes = b"\x00") -> bytes:
    """``doc.get_update(state)`` (what a peer at ``state`` lacks; the whole document by
    default), in one transaction on the Rust document when possible."""
    if _raw_ok(doc):
        return _read_raw(doc, state)
    return doc.get_update(state)
