"""The deployment files in ``contrib/``: the systemd unit passes ``systemd-analyze verify``,
the nginx site passes ``nginx -t`` and carries real editors to a real server, the Caddyfile
passes ``caddy validate``.

The tools come from Debian's packages (``.ci/run`` installs them); without them these tests
skip, unless ``COLLAB_REQUIRE_SERVICES=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from collab.config import Config
from tests.conftest import TIMEOUT_FACTOR, editor, eventually, start_server
from tests.nginx import CONTRIB, site, tool
from tests.process import free_port


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit (pointed at this
    checkout's collab, since it checks that the command exists)."""
    analyze = tool("systemd-analyze")
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
    caddy = tool("caddy")
    done = subprocess.run(
        [caddy, "validate", "--config", str(CONTRIB / "caddy" / "Caddyfile"), "--adapter",
         "caddyfile"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def test_nginx_site_checks_and_carries_editors(tmp_path: Path, config: Config) -> None:
    """``nginx -t`` accepts the site, and two editors connected through it over wss:// see
    each other's edits, the HTTP API answers through it, and port 80 redirects to https."""
    nginx = tool("nginx", "/usr/sbin/nginx")
    https, http = free_port(), free_port()
    async with start_server(config) as server:
        conf = site(tmp_path, [server.test_server.port or 0], https, http)
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
