"""The emulator's serving certificate: HTTPS on 127.0.0.1, as a real API server serves.

Plain HTTP is not enough: kubectl and client-go send a kubeconfig's bearer token only over TLS
(an http:// server gets no Authorization header, so every request would be anonymous). One CA
and one loopback serving certificate are made with the openssl command (the real tier needs it
too) the first time an emulator starts in a process, and shared by every emulator after it.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_dir: Path | None = None
_SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def _make(d: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the API emulator serves HTTPS (kubectl sends tokens only over TLS) and makes its "
            "certificate with the openssl command: install openssl (apt-get install openssl)"
        )
    (d / "san.cnf").write_text(f"[req]\ndistinguished_name=dn\n[dn]\n[ext]\n{_SAN}\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "3650", "-subj", "/CN=kopflow-emulator-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=kopflow-emulator", "-config", "san.cnf"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "3650", "-extfile", "san.cnf",
         "-extensions", "ext"],
    ]  # fmt: skip
    for args in steps:
        done = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr[-2000:]}")


def files() -> Path:
    """The folder holding ca.crt, server.crt and server.key (made once per process)."""
    global _dir
    with _lock:
        if _dir is None:
            d = Path(tempfile.mkdtemp(prefix="kopflow-emulator-tls-"))
            atexit.register(shutil.rmtree, d, True)
            _make(d)
            _dir = d
        return _dir


def ca_file() -> Path:
    """The CA that signed the emulator's certificate: what clients verify it with."""
    return files() / "ca.crt"


def server_context() -> ssl.SSLContext:
    d = files()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "server.crt", d / "server.key")
    return ctx
