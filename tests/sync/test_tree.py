"""Finding the roots yrs cannot read as JSON without looping forever (``collab.sync.tree``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Array, Doc, Map, Text

from collab.history.replay import content_of, root_kinds
from collab.sync.protocol import encode_update
from collab.sync.tree import unreadable_roots
from collab.sync.validator import check_update
from tests import process
from tests.conftest import TIMEOUT_FACTOR, eventually, raw_client

# Found by the validator's fuzzer (docs/validation.md): a nested Array under the root
# "array", then a string with astral characters whose parent is that Array. Both pass the
# validator; reading the Array loops forever inside yrs.
NESTED_ARRAY = bytes.fromhex("0101e7edd6caa4e1b50b0007010561727261790000")
ASTRAL_TEXT_IN_IT = bytes.fromhex(
    "0101e7edd6caa4e1b50b010400e7edd6caa4e1b50b000a61f09f988062f09f8e8900"
)


def _trap() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(NESTED_ARRAY)
    doc.apply_update(ASTRAL_TEXT_IN_IT)
    return doc


def test_text_inside_an_array_makes_its_root_unreadable() -> None:
    """The fuzzer's case is valid to the validator, and its root is named unreadable."""
    check_update(NESTED_ARRAY)
    check_update(ASTRAL_TEXT_IN_IT)
    assert unreadable_roots(_trap().get_update()) == {"array"}
    assert root_kinds(_trap()) == {"array": "unreadable"}


def test_reading_the_trap_as_json_returns_at_once() -> None:
    """content_of gives null for the unreadable root instead of hanging; run in a child
    process, since a hang holds the GIL and no timeout in this process could end it."""
    code = (
        "from pycrdt import Doc\n"
        "from collab.history.replay import content_of\n"
        "import tests.sync.test_tree as t\n"
        "print(content_of(t._trap()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "{'array': None}"


def test_what_real_editors_write_is_readable() -> None:
    """Emoji in texts, in texts nested in maps and arrays, and as array values are fine."""
    doc: Doc[Any] = Doc()
    meta = doc.get("meta", type=Map)
    meta["title"] = Text("hi 😀")
    meta["tags"] = Array(["😀", "🎉 party", 1])
    doc.get("list", type=Array).extend(["a😀", Text("nested 🎉")])
    doc.get("content", type=Text).insert(0, "typed 😀 text")
    meta["title"].insert(2, "🎉")
    assert unreadable_roots(doc.get_update()) == set()
    kinds = root_kinds(doc)
    assert kinds == {"meta": "map", "list": "array", "content": "text"}
    assert content_of(doc)["meta"]["tags"] == ["😀", "🎉 party", 1]


def test_a_document_without_astral_text_has_no_unreadable_root() -> None:
    """Text inside an array is harmless without characters outside the BMP."""
    doc: Doc[Any] = Doc()
    doc.get("list", type=Array).extend([1, 2, Text("plain")])
    assert unreadable_roots(doc.get_update()) == set()


async def test_a_server_reads_the_trap_as_json_without_hanging(tmp_path: Path) -> None:
    """Through a real server process: the two updates are accepted and relayed, and the
    content and history read as JSON answer at once, with null for the unreadable root."""
    server = await process.start(tmp_path / "collab.db", tmp_path / "server.log")
    try:
        async with aiohttp.ClientSession() as session:
            async with raw_client(session, server.url("trap")) as client:
                await client.handshake()
                await client.ws.send_bytes(encode_update(NESTED_ARRAY))
                await client.ws.send_bytes(encode_update(ASTRAL_TEXT_IN_IT))
                base = f"http://127.0.0.1:{server.port}/api/docs/trap"
                await eventually(lambda: _seq(session, base, 2), what="both stored")
                async with asyncio.timeout(10 * TIMEOUT_FACTOR):
                    async with session.get(f"{base}/content?format=json") as response:
                        assert response.status == 200
                        assert (await response.json())["content"] == {"array": None}
                    async with session.get(f"{base}/versions/2?format=json") as response:
                        assert response.status == 200
    finally:
        server.process.kill()
        await server.wait()


async def _seq(session: aiohttp.ClientSession, base: str, seq: int) -> bool:
    async with session.get(f"{base}/info") as response:
        return response.status == 200 and (await response.json()).get("seq") == seq
