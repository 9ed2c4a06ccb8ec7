"""``collab serve --certfile --keyfile`` serves wss:// and https:// directly."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import process
from tests.conftest import editor, eventually


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_wss_with_certificate(tmp_path: Path) -> None:
    """With a certificate the server speaks TLS: editors sync over wss://, health over https."""
    cert, key = await asyncio.to_thread(_self_signed, tmp_path)
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
