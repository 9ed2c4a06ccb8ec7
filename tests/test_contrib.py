"""The deployment files in ``contrib/``: the systemd unit passes ``systemd-analyze verify``,
the nginx site passes ``nginx -t`` and carries real editors to a real server, the Caddyfile
passes ``caddy validate``.

The tools come from Debian's packages (``.ci/run`` installs them); without them these tests
skip, unless ``COLLAB_REQUIRE_SERVICES=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collab.config import Config
from tests.conftest import TIMEOUT_FACTOR, editor, eventually, start_server
from tests.process import free_port

CONTRIB = Path(__file__).resolve().parents[1] / "contrib"


def _tool(name: str, *paths: str) -> str:
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("COLLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"COLLAB_REQUIRE_SERVICES=1 but {name} is not installed")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit (pointed at this
    checkout's collab, since it checks that the command exists)."""
    analyze = _tool("systemd-analyze")
    unit = (CONTRIB / "systemd" / "collab.service").read_text()
    assert "ProtectSystem=strict" in unit and "StateDirectory=collab" in unit
    collab = Path(sys.executable).parent / "collab"
    local = tmp_path / "collab.service"
    local.write_text(unit.replace("/opt/collab/.venv/bin/collab", str(collab)))
    done = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_caddyfile_validates() -> None:
    """``caddy validate`` accepts the Caddyfile."""
    caddy = _tool("caddy")
    done = subprocess.run(
        [caddy, "validate", "--config", str(CONTRIB / "caddy" / "Caddyfile"), "--adapter",
         "caddyfile"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
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


def _nginx_config(directory: Path, upstream: int, https: int, http: int) -> Path:
    """The contrib site, with its certificate, ports and upstream pointed at this test."""
    cert, key = _certificate(directory)
    site = (CONTRIB / "nginx" / "collab.conf").read_text()
    site = site.replace("/etc/ssl/certs/collab.pem", str(cert))
    site = site.replace("/etc/ssl/private/collab.key", str(key))
    site = site.replace("server 127.0.0.1:1234", f"server 127.0.0.1:{upstream}")
    site = re.sub(r"listen 443 ssl", f"listen 127.0.0.1:{https} ssl", site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    (directory / "site.conf").write_text(site)
    main = directory / "nginx.conf"
    main.write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\n"
        "daemon off;\nevents {}\n"
        f"http {{ access_log off; client_body_temp_path {directory}/body; "
        f"proxy_temp_path {directory}/proxy; include {directory}/site.conf; }}\n"
    )
    return main


async def test_nginx_site_checks_and_carries_editors(tmp_path: Path, config: Config) -> None:
    """``nginx -t`` accepts the site, and two editors connected through it over wss:// see
    each other's edits, the HTTP API answers through it, and port 80 redirects to https."""
    nginx = _tool("nginx", "/usr/sbin/nginx")
    https, http = free_port(), free_port()
    async with start_server(config) as server:
        conf = _nginx_config(tmp_path, server.test_server.port or 0, https, http)
        check = await asyncio.to_thread(
            subprocess.run, [nginx, "-t", "-c", str(conf)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        proxy = await asyncio.create_subprocess_exec(nginx, "-c", str(conf))
        try:
            connector = aiohttp.TCPConnector(ssl=False)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def up() -> bool:
                    try:
                        async with session.get(f"https://127.0.0.1:{https}/readyz") as r:
                            return r.status == 200
                    except aiohttp.ClientConnectionError:
                        return False

                await eventually(up, timeout=10, what="nginx up")
                url = f"wss://127.0.0.1:{https}/ws/through-nginx"
                async with editor(session, url) as alice, editor(session, url) as bob:
                    alice.text += "via nginx"
                    await eventually(lambda: str(bob) == "via nginx")
                async with session.get(
                    f"http://127.0.0.1:{http}/", allow_redirects=False
                ) as response:
                    assert response.status == 301
                    assert response.headers["Location"].startswith("https://")
        finally:
            proxy.terminate()
            await asyncio.wait_for(proxy.wait(), 10 * TIMEOUT_FACTOR)
