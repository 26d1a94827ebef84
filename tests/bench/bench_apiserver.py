"""Requests per second of the API server emulator with 100 and with 5,000 stored objects.

    python tests/bench/bench_apiserver.py [--seconds 2] [--concurrency 8]

A benchmark, not a test: it prints a table. Each operation runs for a fixed time with several
concurrent aiohttp clients against a fresh emulator whose namespace holds N ConfigMaps; the
request log's counters (not a scan of it) give the number of requests served.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.apiserver import ADMIN_TOKEN, ApiServer
from tests.support.apiserver_tls import ca_file

NS = "bench"
MERGE = {"Content-Type": "application/merge-patch+json"}
Op = Callable[[aiohttp.ClientSession, int], Awaitable[None]]


def fill(server: ApiServer, count: int) -> None:
    """Store `count` ConfigMaps directly (fast), labelled so selectors can pick one."""
    rt = server.storage_type("configmaps")

    def create() -> None:
        server.store.create(server.store.namespaces, "", {"metadata": {"name": NS}})
        for i in range(count):
            body = {
                "metadata": {"name": f"cm-{i}", "labels": {"index": str(i), "group": str(i % 10)}},
                "data": {"value": "x" * 64},
            }
            server.store.create(rt, NS, body)

    server.call(create, timeout=120)


def operations(base: str, count: int) -> dict[str, Op]:
    path = f"{base}/api/v1/namespaces/{NS}/configmaps"
    created = itertools.count()

    async def get(s: aiohttp.ClientSession, i: int) -> None:
        async with s.get(f"{path}/cm-{i % count}") as r:
            assert r.status == 200, r.status
            await r.read()

    async def list_selected(s: aiohttp.ClientSession, i: int) -> None:
        async with s.get(path, params={"labelSelector": f"index={i % count}"}) as r:
            assert r.status == 200, r.status
            await r.read()

    async def patch(s: aiohttp.ClientSession, i: int) -> None:
        async with s.patch(
            f"{path}/cm-{i % count}", json={"data": {"n": str(i)}}, headers=MERGE
        ) as r:
            assert r.status == 200, r.status
            await r.read()

    async def create(s: aiohttp.ClientSession, i: int) -> None:
        async with s.post(path, json={"metadata": {"name": f"new-{next(created)}"}}) as r:
            assert r.status == 201, r.status
            await r.read()

    async def status_patch(s: aiohttp.ClientSession, i: int) -> None:
        """The operator's hot path: read a Job-like object, then patch it."""
        await get(s, i)
        await patch(s, i)

    return {
        "get": get,
        "list (label selector)": list_selected,
        "merge patch": patch,
        "create": create,
        "get+patch": status_patch,
    }


async def measure(op: Op, seconds: float, concurrency: int) -> int:
    """Calls of `op` completed in `seconds` by `concurrency` clients."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < deadline:
            await op(session, i)
            done += 1
            i += concurrency

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tls = ssl.create_default_context(cafile=str(ca_file()))
    connector = aiohttp.TCPConnector(ssl=tls)
    async with aiohttp.ClientSession(headers=auth, connector=connector) as session:
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
    return done


def run(count: int, seconds: float, concurrency: int) -> dict[str, float]:
    server = ApiServer(crd_dir=None).start()
    try:
        fill(server, count)
        results = {}
        for name, op in operations(server.url, count).items():
            before = server.requests.total
            started = time.perf_counter()
            asyncio.run(measure(op, seconds, concurrency))
            elapsed = time.perf_counter() - started
            results[name] = (server.requests.total - before) / elapsed
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per operation")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    args = parser.parse_args()
    sizes = (100, 5000)
    table = {n: run(n, args.seconds, args.concurrency) for n in sizes}
    print(f"requests/second ({args.concurrency} clients, {args.seconds:g} s per operation)")
    print(f"{'operation':<24}" + "".join(f"{f'{n} objects':>16}" for n in sizes))
    for name in table[sizes[0]]:
        print(f"{name:<24}" + "".join(f"{table[n][name]:>16.0f}" for n in sizes))


if __name__ == "__main__":
    main()
