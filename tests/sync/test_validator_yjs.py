"""The validator against real Yjs: it refuses nothing that JavaScript Yjs writes and yrs
can store (``tests/js/updates.mjs`` writes every kind of content Yjs encodes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pycrdt import Doc

from collab.errors import ProtocolError
from collab.sync.validator import check_state_vector, check_update
from collab.sync.ydoc import is_panic
from tests.jsclient import JS_DIR, require_node


async def _written_by_yjs(seed: int, edits: int) -> list[tuple[str, bytes]]:
    node = require_node()
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "updates.mjs"),
        "--seed",
        str(seed),
        "--edits",
        str(edits),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    return [(line["kind"], bytes.fromhex(line["hex"])) for line in lines]


def _yrs_stores(update: bytes) -> bool:
    doc: Doc[Any] = Doc()
    try:
        doc.apply_update(update)
        doc.get_update()
    except ValueError:
        return False
    except BaseException as exc:
        if is_panic(exc):
            return False
        raise
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_update_yjs_writes_and_yrs_stores_is_accepted(seed: int) -> None:
    """Each update and state vector real Yjs writes passes the validator, unless yrs cannot
    store it either (Yjs's XmlHook, which yrs does not implement)."""
    written = await _written_by_yjs(seed, 1500)
    refused: dict[str, int] = {}
    for kind, data in written:
        try:
            (check_update if kind == "update" else check_state_vector)(data)
        except ProtocolError as exc:
            assert kind == "update", f"state vector refused: {exc.reason} {data.hex()}"
            assert not _yrs_stores(data), f"refused what yrs stores: {exc.reason} {data.hex()}"
            refused[exc.reason] = refused.get(exc.reason, 0) + 1
    assert len(written) > 1500
    assert sum(refused.values()) < len(written) / 20, refused
