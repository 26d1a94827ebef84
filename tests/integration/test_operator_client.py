"""The operator's client stack (controller/client.py) against the emulator: pages, 401
re-login from each identity source, 429 Retry-After, exec plugins off the event loop,
tls-server-name and proxies, for kopflow's requests and for kopf's session alike."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.support.apiserver import ApiServer
from tests.support.tunnels import ConnectProxy

from kopflow.controller import handlers
from kopflow.controller.client import ApiError, Client, Credentials, RetryPolicy, connect

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    srv = ApiServer().start()
    srv.add_user("token-1", "alice", ("system:masters",))
    try:
        yield srv
    finally:
        srv.stop()


def kubeconfig(server: ApiServer, path: Path, token: str = "token-1", **cluster: Any) -> Path:
    """The emulator's kubeconfig with extra cluster fields (tls-server-name, proxy-url)."""
    server.kubeconfig(path, token=token)
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"].update(cluster)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def client(server: ApiServer, tmp_path: Path) -> AsyncIterator[Client]:
    c = await connect(str(kubeconfig(server, tmp_path / "kubeconfig")))
    try:
        yield c
    finally:
        await c.close()


async def test_lists_come_in_pages_of_the_configured_size(
    client: Client, server: ApiServer
) -> None:
    for i in range(5):
        await client.request("POST", CONFIGMAPS, {"metadata": {"name": f"cm-{i}"}})
    lists = server.requests.count("list", "configmaps")
    items, version = await client.list(CONFIGMAPS, page_size=2)
    assert sorted(i["metadata"]["name"] for i in items) == [f"cm-{i}" for i in range(5)]
    assert version
    assert server.requests.count("list", "configmaps") - lists == 3  # 2 + 2 + 1


async def test_a_401_reads_the_kubeconfig_again_and_retries_once(
    server: ApiServer, tmp_path: Path
) -> None:
    path = kubeconfig(server, tmp_path / "kubeconfig")
    client = await connect(str(path))
    try:
        await client.request("GET", CONFIGMAPS)
        server.add_user("token-2", "alice", ("system:masters",))
        del server.auth.static["token-1"]  # revoked; the kubeconfig now names a new one
        kubeconfig(server, path, token="token-2")
        await client.request("GET", CONFIGMAPS)
        assert server.requests.codes[401] == 1
        assert client.credentials.logins == 2
        # a token nobody replaces: one re-login, then the 401 is the caller's
        del server.auth.static["token-2"]
        with pytest.raises(ApiError) as err:
            await client.request("GET", CONFIGMAPS)
        assert err.value.status == 401
    finally:
        await client.close()


async def test_429_is_retried_after_retry_after_with_bounded_attempts(
    client: Client, server: ApiServer
) -> None:
    client.retry = RetryPolicy(max_retries=2, jitter=0.2)
    server.faults.configure(throttle=1.0, verbs={"get"}, resources={"configmaps"})
    with pytest.raises(ApiError) as err:
        await client.request("GET", f"{CONFIGMAPS}/any")
    assert err.value.status == 429
    tries = [r.at for r in server.requests.recent if r.code == 429]
    assert len(tries) == 3  # the first and two retries, no more
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert all(1.0 <= gap <= 1.6 for gap in gaps), gaps  # Retry-After: 1, plus <= 20% jitter


async def test_a_throttled_request_pauses_the_others_too(client: Client, server: ApiServer) -> None:
    """One 429 holds back every request of the process for Retry-After: no retry storm."""
    server.faults.configure(throttle=1.0, verbs={"get"}, resources={"configmaps"})
    client.retry = RetryPolicy(max_retries=1, jitter=0.0)
    throttled = asyncio.create_task(client.request("GET", f"{CONFIGMAPS}/any"))
    while not client.retries:  # the 429 arrived and its pause began
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await client.request("GET", "/api/v1/namespaces")  # not throttled itself
    assert time.monotonic() - started >= 0.9
    with pytest.raises(ApiError):
        await throttled


@pytest.fixture
def in_cluster(
    server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    root = tmp_path / "serviceaccount"
    root.mkdir()
    (root / "token").write_text("token-1")
    (root / "ca.crt").write_bytes(server.ca_file.read_bytes())
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.setenv("KOPFLOW_SERVICEACCOUNT_ROOT", str(root))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    yield root


async def test_in_cluster_a_replaced_token_file_is_used_without_a_401(
    in_cluster: Path, server: ApiServer
) -> None:
    client = await connect()
    try:
        assert client.credentials.in_cluster
        await client.request("GET", CONFIGMAPS)
        server.add_user("token-2", "alice", ("system:masters",))
        new = in_cluster / "token.new"
        new.write_text("token-2\n")
        new.replace(in_cluster / "token")  # kubelet swaps the projected file atomically
        del server.auth.static["token-1"]
        await client.request("GET", CONFIGMAPS)
        assert server.requests.codes[401] == 0
    finally:
        await client.close()


async def test_in_cluster_a_401_rereads_the_token_file(in_cluster: Path, server: ApiServer) -> None:
    client = await connect()
    try:
        await client.request("GET", CONFIGMAPS)
        server.add_user("token-2", "alice", ("system:masters",))
        del server.auth.static["token-1"]
        # the same size and a restored mtime: only the 401 can tell the token changed
        stat = (in_cluster / "token").stat()
        (in_cluster / "token").write_text("token-2")  # same inode, same size
        os.utime(in_cluster / "token", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        await client.request("GET", CONFIGMAPS)
        assert server.requests.codes[401] == 1
    finally:
        await client.close()


PLUGIN = """
import datetime, json, pathlib, sys, time
calls = pathlib.Path(sys.argv[1])
n = len(calls.read_text().splitlines()) if calls.exists() else 0
calls.write_text("call\\n" * (n + 1))
time.sleep(0.5)  # a slow plugin (a cloud CLI): the event loop must keep running meanwhile
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=float(sys.argv[2]))
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {
        "token": f"token-{n + 1}",
        "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    },
}))
"""


def exec_kubeconfig(server: ApiServer, tmp_path: Path, valid_for: float) -> tuple[Path, Path]:
    """A kubeconfig whose user is an exec plugin; its tokens count up; calls are logged."""
    script, calls = tmp_path / "plugin.py", tmp_path / "calls"
    script.write_text(PLUGIN)
    path = kubeconfig(server, tmp_path / "kubeconfig")
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(script), str(calls), str(valid_for)],
            "interactiveMode": "Never",
        }
    }
    path.write_text(yaml.safe_dump(config))
    for n in range(1, 4):
        server.add_user(f"token-{n}", "alice", ("system:masters",))
    return path, calls


async def test_an_exec_plugin_runs_off_the_loop_and_again_once_expired(
    server: ApiServer, tmp_path: Path
) -> None:
    # valid for 2 to 3 s (the plugin writes whole seconds)
    path, calls = exec_kubeconfig(server, tmp_path, valid_for=3)
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag = max(lag, time.monotonic() - before - 0.02)

    tick = asyncio.create_task(ticker())
    client = await connect(str(path))
    try:
        await client.request("GET", CONFIGMAPS)
        await client.request("GET", CONFIGMAPS)
        assert calls.read_text().count("call") == 1  # cached while valid
        deadline = time.monotonic() + 15
        while calls.read_text().count("call") < 2 and time.monotonic() < deadline:
            await client.request("GET", CONFIGMAPS)
            await asyncio.sleep(0.2)  # nothing to await: the credential expires by the clock
        assert calls.read_text().count("call") == 2
        assert client.credentials.token() == "token-2"
        assert lag < 0.25, f"the event loop stalled {lag:.2f}s while the plugin ran"
    finally:
        tick.cancel()
        await client.close()


async def test_a_401_runs_the_exec_plugin_again(server: ApiServer, tmp_path: Path) -> None:
    path, calls = exec_kubeconfig(server, tmp_path, valid_for=3600)
    client = await connect(str(path))
    try:
        await client.request("GET", CONFIGMAPS)
        del server.auth.static["token-1"]
        await client.request("GET", CONFIGMAPS)
        assert calls.read_text().count("call") == 2
        assert server.requests.codes[401] == 1
    finally:
        await client.close()


@pytest.fixture
def kopf_login(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """kopf's login handler with a given kubeconfig, as `kopflow operator` would call it."""

    async def login(path: Path) -> aiohttp.ClientSession:
        monkeypatch.setitem(handlers.OPTIONS, "kubeconfig", str(path))
        handlers._identity.clear()
        info = await handlers.login()
        return info.aiohttp_session

    yield login
    handlers._identity.clear()


async def both_clients_get(path: Path, kopf_login: Any) -> list[int]:
    """GET /api through kopflow's client and through kopf's session from one kubeconfig."""
    client = await connect(str(path))
    session = await kopf_login(path)
    try:
        await client.request("GET", "/api")
        async with session.get(f"{client.credentials.server}/api") as resp:
            return [200, resp.status]
    finally:
        await client.close()
        await session.close()


async def test_tls_server_name_is_the_name_verified(
    server: ApiServer, tmp_path: Path, kopf_login: Any
) -> None:
    """The emulator's certificate names 127.0.0.1 and localhost: `tls-server-name: localhost`
    passes, a name the certificate lacks fails, for both clients."""
    good = kubeconfig(server, tmp_path / "good", **{"tls-server-name": "localhost"})
    assert await both_clients_get(good, kopf_login) == [200, 200]
    bad = kubeconfig(server, tmp_path / "bad", **{"tls-server-name": "elsewhere.example"})
    client = await connect(str(bad))
    try:
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match=r"elsewhere\.example"):
            await client.request("GET", "/api")
    finally:
        await client.close()
    session = await kopf_login(bad)
    async with session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match=r"elsewhere\.example"):
            await session.get(f"{server.url}/api")


async def test_proxy_url_tunnels_both_clients(
    server: ApiServer, tmp_path: Path, kopf_login: Any
) -> None:
    with ConnectProxy() as proxy:
        path = kubeconfig(server, tmp_path / "kubeconfig", **{"proxy-url": proxy.url})
        assert await both_clients_get(path, kopf_login) == [200, 200]
    target = server.url.removeprefix("https://")
    # one connection each, kept alive
    assert [t.target for t in proxy.snapshot()].count(target) == 2


async def test_https_proxy_from_the_environment_tunnels_both_clients(
    server: ApiServer, tmp_path: Path, kopf_login: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        path = kubeconfig(server, tmp_path / "kubeconfig")
        assert await both_clients_get(path, kopf_login) == [200, 200]
    assert len(proxy.snapshot()) == 2


def test_exec_credentials_give_kopf_their_expiry(server: ApiServer, tmp_path: Path) -> None:
    """The exec credential's expiry is known (kopf is not given it: its middleware takes a
    fresh token per request, see handlers.login)."""
    path, _ = exec_kubeconfig(server, tmp_path, valid_for=3600)

    async def load() -> dt.datetime | None:
        creds = Credentials(str(path))
        await creds.load()
        return creds.expiration()

    expiry = asyncio.run(load())
    assert expiry is not None
    left = (expiry - dt.datetime.now(dt.UTC)).total_seconds()
    assert 3500 < left <= 3600
