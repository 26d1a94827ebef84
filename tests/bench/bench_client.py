"""Client-side CPU per API request and per watch event: the operator's kubernetes_asyncio
stack (controller/client.py) against the hand-written aiohttp code it replaced, and kopf's
per-event cost for the same stream (the alternative for Jobs and Pods).

    python tests/bench/bench_client.py [--requests 400] [--events 1000]

A benchmark, not a test: it prints a table. The emulator serves from its own thread; only the
CPU time of the client's thread (time.thread_time) is counted, so the server's work is not.
Events are produced by the emulator's own thread (ConfigMaps stored directly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.apiserver import ADMIN_TOKEN, ApiServer
from tests.support.rawhttp import Http

from kopflow.controller.client import Client, Informer, connect

NS = "default"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
BODY = {"data": {f"k{i}": "v" * 40 for i in range(20)}}  # ~1 KiB, a status patch's size


def produce(server: ApiServer, prefix: str, count: int) -> None:
    """`count` ConfigMaps created on the emulator's thread: `count` ADDED events."""
    rt = server.storage_type("configmaps")

    def create() -> None:
        for i in range(count):
            body = {"metadata": {"name": f"{prefix}-{i}", "labels": {"b": prefix}}, **BODY}
            server.store.create(rt, NS, body)

    server.call(create, timeout=120)


async def per_request(server: ApiServer, client: Client, count: int) -> tuple[float, float]:
    """CPU µs per PATCH: (old hand-written Http, kubernetes_asyncio Client)."""
    await client.request("POST", CMS, {"metadata": {"name": "target"}})
    old = Http(_sync_config(server), "bench")
    out = []
    for send in (old.request, client.request):
        await send("PATCH", f"{CMS}/target", BODY, "application/merge-patch+json")  # warm
        started = time.thread_time()
        for _ in range(count):
            await send("PATCH", f"{CMS}/target", BODY, "application/merge-patch+json")
        out.append((time.thread_time() - started) / count * 1e6)
    await old.close()
    return out[0], out[1]


def _sync_config(server: ApiServer) -> Any:
    import kubernetes

    config = kubernetes.client.Configuration()
    config.host = server.url
    config.ssl_ca_cert = str(server.ca_file)
    config.api_key["BearerToken"] = f"Bearer {ADMIN_TOKEN}"
    return config


async def old_watch_events(server: ApiServer, count: int) -> float:
    """The removed controller/watch.py loop: aiohttp readline + json.loads per event."""
    from tests.support.rawhttp import auth_headers, ssl_context

    config = _sync_config(server)
    seen = 0
    async with aiohttp.ClientSession(
        headers=auth_headers(config, "bench"),
        connector=aiohttp.TCPConnector(ssl=ssl_context(config)),
    ) as session:
        url = f"{server.url}{CMS}?watch=true&labelSelector=b%3Dold&timeoutSeconds=120"
        async with session.get(url) as resp:
            task = asyncio.get_running_loop().run_in_executor(None, produce, server, "old", count)
            started = time.thread_time()
            while line := await resp.content.readline():
                event = json.loads(line)
                if event.get("type") == "ADDED":
                    seen += 1
                    if seen == count:
                        break
            spent = time.thread_time() - started
            await task
    return spent / count * 1e6


async def informer_events(server: ApiServer, client: Client, count: int) -> float:
    """controller/client.py's Informer (kubernetes_asyncio Watch, raw JSON)."""
    done = asyncio.Event()
    seen = 0

    def on_event(kind: str | None, _: dict[str, Any]) -> None:
        nonlocal seen
        seen += kind == "ADDED"
        if seen == count:
            done.set()

    listed = asyncio.Event()
    informer = Informer(client, CMS, "b=new", on_event, lambda *_: listed.set())
    task = asyncio.create_task(informer.run())
    await listed.wait()
    await asyncio.sleep(0.2)  # the watch request is open
    producer = asyncio.get_running_loop().run_in_executor(None, produce, server, "new", count)
    started = time.thread_time()
    await done.wait()
    spent = time.thread_time() - started
    await producer
    task.cancel()
    return spent / count * 1e6


async def kopf_events(server: ApiServer, count: int) -> float:
    """kopf's watch and event-handler machinery for the same stream."""
    import kopf

    registry = kopf.OperatorRegistry()
    done = asyncio.Event()
    seen = 0

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=server.url, ca_path=str(server.ca_file), scheme="Bearer", token=ADMIN_TOKEN
        )

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.scanning.disabled = True
        settings.posting.level = logging.WARNING
        settings.batching.batch_window = 0.01

    @kopf.on.event("", "v1", "configmaps", labels={"b": "kopf"}, registry=registry)
    async def event(event: kopf.RawEvent, **_: Any) -> None:
        nonlocal seen
        seen += event.get("type") == "ADDED"
        if seen == count:
            done.set()

    logging.getLogger("kopf").setLevel(logging.WARNING)
    stop = asyncio.Event()
    ready = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            namespaces=[NS],
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    await ready.wait()
    await asyncio.sleep(1.0)  # kopf's watch is open (no readiness signal for it)
    producer = asyncio.get_running_loop().run_in_executor(None, produce, server, "kopf", count)
    started = time.thread_time()
    await done.wait()
    spent = time.thread_time() - started
    await producer
    stop.set()
    await operator
    return spent / count * 1e6


async def main(requests: int, events: int) -> None:
    server = ApiServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = await connect(str(server.kubeconfig(Path(tmp) / "kubeconfig")))
            old_req, new_req = await per_request(server, client, requests)
            old_ev = await old_watch_events(server, events)
            new_ev = await informer_events(server, client, events)
            await client.close()
        kopf_ev = await kopf_events(server, events)
    finally:
        server.stop()
    print(f"{'client-side CPU':38} {'µs':>8}")
    print(f"{'PATCH, hand-written aiohttp (old)':38} {old_req:8.0f}")
    print(f"{'PATCH, kubernetes_asyncio Client':38} {new_req:8.0f}")
    print(f"{'watch event, hand-written loop (old)':38} {old_ev:8.0f}")
    print(f"{'watch event, Informer (Watch)':38} {new_ev:8.0f}")
    print(f"{'watch event, kopf on.event':38} {kopf_ev:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--events", type=int, default=1000)
    ns = parser.parse_args()
    asyncio.run(main(ns.requests, ns.events))
