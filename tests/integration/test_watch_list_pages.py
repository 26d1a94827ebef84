"""The operator's run list reads in pages and keeps only what its shrink hook returns, so a
list of 10,000 kept runs is never held in full at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
from tests.support.apiserver import ApiServer

from kopflow.controller.client import connect


async def test_a_list_reads_pages_and_keeps_what_shrink_returns(tmp_path: Path) -> None:
    server = ApiServer().start()
    try:
        config = server.kubeconfig(tmp_path / "kubeconfig")
        admin = kubernetes.config.new_client_from_config(config_file=str(config))
        core = kubernetes.client.CoreV1Api(admin)
        core.create_namespace({"metadata": {"name": "ns"}})
        for i in range(5):
            meta = {"name": f"cm-{i}", "labels": {"kopflow.dev/run": "r"}}
            core.create_namespaced_config_map("ns", {"metadata": meta, "data": {"big": "x" * 999}})
        core.create_namespaced_config_map("ns", {"metadata": {"name": "unlabelled"}})
        admin.close()
        shrunk: list[str] = []

        def shrink(body: dict[str, Any]) -> dict[str, Any]:
            shrunk.append(body["metadata"]["name"])
            return {"name": body["metadata"]["name"]}

        client = await connect(str(config))
        try:
            server.requests.reset()
            items, version = await client.list(
                "/api/v1/configmaps",
                {"labelSelector": "kopflow.dev/run"},
                page_size=2,
                shrink=shrink,
            )
        finally:
            await client.close()
        assert version.isdigit()
        assert items == [{"name": f"cm-{i}"} for i in range(5)]
        assert shrunk == [f"cm-{i}" for i in range(5)]
        assert server.requests.counts[("list", "configmaps")] == 3  # 2 + 2 + 1
    finally:
        server.stop()
