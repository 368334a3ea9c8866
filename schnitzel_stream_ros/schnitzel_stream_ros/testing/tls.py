"""A self-signed certificate for 127.0.0.1, made by the openssl command line, for HTTPS tests on loopback."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """(cert.pem, key.pem) in `directory`, valid one day for IP 127.0.0.1; None without openssl."""
    if shutil.which('openssl') is None:
        return None
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(key), '-out', str(cert),
         '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key
