"""Ways a process authenticates to Kubernetes, made for tests against the real control plane.

    kubeconfig(path, server, ca, token_user(t), tls_server_name="kubernetes", proxy_url=...)
    crt, key = client_certificate(admin, "alice", workdir)          # signed through the CSR API
    token = bound_token(admin, ns, "sa", secret)                    # dies with the Secret
    sa_dir = ServiceAccountDir(root).write(token=..., ca=..., namespace=...)   # kubelet's layout

Everything here is what a user or the kubelet does; nothing reaches into the server's keys.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from tests.support.informer import Cache

EXEC_PLUGIN = Path(__file__).resolve().parent / "exec_credential.py"
EXEC_API = "client.authentication.k8s.io/v1"


def kubeconfig(
    path: Path,
    server: str,
    ca_file: Path | None,
    user: dict[str, Any],
    *,
    tls_server_name: str | None = None,
    proxy_url: str | None = None,
) -> Path:
    """A one-context kubeconfig at `path` for `user` (one of the *_user() entries)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    if tls_server_name is not None:
        cluster["tls-server-name"] = tls_server_name
    if proxy_url is not None:
        cluster["proxy-url"] = proxy_url
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def token_user(token: str) -> dict[str, Any]:
    return {"token": token}


def cert_user(crt: Path, key: Path) -> dict[str, Any]:
    return {"client-certificate": str(crt), "client-key": str(key)}


def exec_user(token_file: Path, log: Path, ttl: float, sleep: float) -> dict[str, Any]:
    """The exec plugin of exec_credential.py: a token from token_file, valid ttl seconds."""
    args = [str(EXEC_PLUGIN), "--token-file", str(token_file), "--log", str(log)]
    return _exec_plugin([*args, "--ttl", str(ttl), "--sleep", str(sleep)])


def exec_cert_user(crt: Path, key: Path, log: Path) -> dict[str, Any]:
    """The exec plugin of exec_credential.py handing out the certificate in crt and key."""
    return _exec_plugin(
        [str(EXEC_PLUGIN), "--cert-file", str(crt), "--key-file", str(key), "--log", str(log)]
    )


def _exec_plugin(args: list[str]) -> dict[str, Any]:
    """A kubeconfig user running this Python with `args` as its credential plugin."""
    return {
        "exec": {
            "apiVersion": EXEC_API,
            "command": sys.executable,
            "args": args,
            "interactiveMode": "Never",
        }
    }


def short_lived_certificate(
    ca_crt: Path, ca_key: Path, user: str, seconds: int, workdir: Path
) -> tuple[Path, Path]:
    """A client certificate for `user` valid `seconds` from now, signed by the cluster's CA
    with `openssl ca`. The one exception to "nothing reaches into the server's keys": the CSR
    API will not sign for less than 10 minutes, and a test must see a certificate expire. The
    controller-manager signs CSRs with this same key, so the server treats both alike."""
    from datetime import UTC, datetime, timedelta

    ca = workdir / f"ca-{user}"
    ca.mkdir()
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("01\n")
    (ca / "ca.cnf").write_text(
        f"[ca]\ndefault_ca = d\n[d]\ndir = {ca}\ndatabase = {ca}/index.txt\n"
        f"serial = {ca}/serial\nnew_certs_dir = {ca}\ndefault_md = sha256\npolicy = p\n"
        "unique_subject = no\n[p]\ncommonName = supplied\n"
    )
    key, csr, crt = ca / f"{user}.key", ca / f"{user}.csr", ca / f"{user}.crt"
    now = datetime.now(UTC)
    stamp = "%Y%m%d%H%M%SZ"
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(csr), "-subj", f"/CN={user}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "ca", "-batch", "-config", str(ca / "ca.cnf"), "-cert", str(ca_crt),
         "-keyfile", str(ca_key), "-in", str(csr), "-out", str(crt), "-notext",
         "-startdate", (now - timedelta(minutes=1)).strftime(stamp),
         "-enddate", (now + timedelta(seconds=seconds)).strftime(stamp)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


def client_certificate(
    client: kubernetes.client.ApiClient, user: str, workdir: Path, timeout: float = 30
) -> tuple[Path, Path]:
    """A client certificate for `user` as a cluster admin hands one out: a key made here, a
    CertificateSigningRequest to the kube-apiserver-client signer, approved, and the
    certificate the controller-manager signs. Returns (certificate, key) files."""
    key, csr = workdir / f"{user}.key", workdir / f"{user}.csr"
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(csr), "-subj", f"/CN={user}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    certificates = kubernetes.client.CertificatesV1Api(client)
    body = {
        "metadata": {"name": user},
        "spec": {
            "request": base64.b64encode(csr.read_bytes()).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "expirationSeconds": 3600,
        },
    }
    certificates.create_certificate_signing_request(body)
    approval = {"type": "Approved", "status": "True", "reason": "Test", "message": "by the test"}
    created = certificates.read_certificate_signing_request(user)
    created.status.conditions = [approval]
    certificates.replace_certificate_signing_request_approval(user, created)
    cache = Cache(client)
    try:
        requests = cache.informer(certificates.list_certificate_signing_request)
        signed = cache.wait(
            lambda: ((requests.items.get(user) or {}).get("status") or {}).get("certificate"),
            timeout,
            f"certificate of CSR {user}",
        )
    finally:
        cache.stop()
    crt = workdir / f"{user}.crt"
    crt.write_bytes(base64.b64decode(signed))
    return crt, key


def bound_token(
    client: kubernetes.client.ApiClient, namespace: str, account: str, secret: str
) -> str:
    """A TokenRequest token of the ServiceAccount bound to a new Secret `secret`: deleting the
    Secret revokes the token (the API server answers 401 for it), as deleting a Pod revokes
    the projected token of that Pod."""
    core = kubernetes.client.CoreV1Api(client)
    made = core.create_namespaced_secret(namespace, {"metadata": {"name": secret}})
    ref = {"kind": "Secret", "apiVersion": "v1", "name": secret, "uid": made.metadata.uid}
    request = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600, "boundObjectRef": ref}}
    )
    return str(request.status.token)


def wait_revoked(server: str, ca_file: Path, token: str, timeout: float = 30) -> None:
    """Until the API server answers 401 for `token` (revocation is seen through informers,
    so a moment after the bound object is deleted). Polled: nothing to watch."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(
        f"{server}/version", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(request, context=ctx, timeout=5).close()
        except urllib.error.HTTPError as err:
            if err.code == 401:
                return
        time.sleep(0.1)
    raise AssertionError(f"the API server still accepts the revoked token after {timeout} s")


class ServiceAccountDir:
    """A projected ServiceAccount volume as the kubelet writes it: files are symlinks into
    `..data`, itself a symlink to a timestamped directory; an update writes a new directory
    and renames a new `..data` link over the old one, so a reader sees the old set or the new
    set, never a mix (kubelet's AtomicWriter)."""

    FILES = ("token", "ca.crt", "namespace")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def write(self, token: str, ca: bytes, namespace: str) -> ServiceAccountDir:
        self.root.mkdir(parents=True, exist_ok=True)
        self.generation += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.generation}"
        data = self.root / stamp
        data.mkdir()
        (data / "token").write_text(token)
        (data / "ca.crt").write_bytes(ca)
        (data / "namespace").write_text(namespace)
        old = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        tmp.rename(self.root / "..data")
        for name in self.FILES:
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(Path("..data") / name)
        if old is not None:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        return self
