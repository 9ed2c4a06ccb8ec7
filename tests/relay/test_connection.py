"""The hand-written frame encoder against aiohttp's own writer, over every size boundary."""

from __future__ import annotations

import random

import pytest

from collab.relay.connection import binary_frame
from tests.frames import frames

# Both sides of each point where the length field changes form (7 bits, 16 bits, 64 bits),
# of aiohttp's own switch to two writes (MSG_SIZE, 16 KiB), and up to 2**24 bytes.
SIZES = sorted(
    {0, 1, 2**24}
    | {edge + delta for edge in (125, 126, 127, 16 * 1024, 65535, 65536) for delta in (-1, 0, 1)}
    | set(random.Random(1234).sample(range(2**24), 24))
)


@pytest.mark.parametrize("size", SIZES)
async def test_binary_frame_matches_aiohttp(size: int) -> None:
    """binary_frame writes exactly the bytes aiohttp's writer sends for the same payload."""
    payload = random.Random(size).randbytes(size)
    assert binary_frame(payload) == await frames([payload], masked=False)
