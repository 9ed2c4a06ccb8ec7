"""``collab serve --certfile --keyfile`` serves wss:// and https:// directly."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from tests import process
from tests.certificate import self_signed
from tests.conftest import editor, eventually


async def test_wss_with_certificate(tmp_path: Path) -> None:
    """With a certificate the server speaks TLS: editors sync over wss://, health over https."""
    cert, key = await asyncio.to_thread(self_signed, tmp_path)
    server = await process.start(
        tmp_path / "collab.db",
        tmp_path / "log",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        scheme="https",
        ssl_context=await asyncio.to_thread(ssl.create_default_context, cafile=str(cert)),
    )
    trust = await asyncio.to_thread(ssl.create_default_context, cafile=str(cert))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            url = f"wss://127.0.0.1:{server.port}/ws/secure"
            async with editor(session, url) as ann, editor(session, url) as bob:
                ann.text += "over tls"
                await eventually(lambda: str(bob) == "over tls")
            async with session.get(f"https://127.0.0.1:{server.port}/healthz") as response:
                assert response.status == 200
    finally:
        server.process.terminate()
        await server.wait()
