"""nginx for tests: the contrib site pointed at test servers, with a self-signed
certificate, and the tool itself (a skip without it, a failure with
``COLLAB_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CONTRIB", "certificate", "site", "tool"]

CONTRIB = Path(__file__).resolve().parents[1] / "contrib"


def tool(name: str, *paths: str) -> str:
    """The path of a command-line tool, or a skip (a failure under COLLAB_REQUIRE_SERVICES)."""
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("COLLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"COLLAB_REQUIRE_SERVICES=1 but {name} is not installed")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def certificate(directory: Path) -> tuple[Path, Path]:
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


def site(directory: Path, upstreams: list[int], https: int, http: int) -> Path:
    """The contrib site, with its certificate, ports and upstream servers pointed at this
    test's (``daemon off``: run it as a child process); returns the main config file."""
    cert, key = certificate(directory)
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
