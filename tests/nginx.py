"""nginx for tests: the contrib site pointed at test servers, with a self-signed
certificate, and the tool itself (a skip without it, a failure with
``COLLAB_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.certificate import self_signed

__all__ = ["CONTRIB", "site", "tool"]

CONTRIB = Path(__file__).resolve().parents[1] / "contrib"


def tool(name: str, *paths: str) -> str:
    """The path of a command-line tool, or a skip (a failure under COLLAB_REQUIRE_SERVICES)."""
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("COLLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"COLLAB_REQUIRE_SERVICES=1 but {name} is not installed")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def site(directory: Path, upstreams: list[int], https: int, http: int) -> Path:
    """The contrib site, with its certificate, ports and upstream servers pointed at this
    test's (``daemon off``: run it as a child process); returns the main config file."""
    cert, key = self_signed(directory)
    text = (CONTRIB / "nginx" / "collab.conf").read_text()
    text = text.replace("/etc/ssl/certs/collab.pem", str(cert))
    text = text.replace("/etc/ssl/private/collab.key", str(key))
    servers = "\n    ".join(f"server 127.0.0.1:{port} max_fails=0;" for port in upstreams)
    text = text.replace("server 127.0.0.1:1234 max_fails=0;", servers)
    text = re.sub(r"listen 443 ssl", f"listen 127.0.0.1:{https} ssl", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http};")
    (directory / "site.conf").write_text(text)
    main = directory / "nginx.conf"
    main.write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\n"
        "daemon off;\nevents {}\n"
        f"http {{ access_log off; client_body_temp_path {directory}/body; "
        f"proxy_temp_path {directory}/proxy; include {directory}/site.conf; }}\n"
    )
    return main
