"""The operator's relist reads in pages and keeps only what its shrink hook returns, so a list
of 10,000 kept runs is never held in full at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.support.apiserver import ApiServer

from kopflow.controller import watch


async def test_a_relist_reads_pages_and_keeps_what_shrink_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ApiServer().start()
    try:
        config = server.kubeconfig(tmp_path / "kubeconfig")
        client = kubernetes.config.new_client_from_config(config_file=str(config))
        core = kubernetes.client.CoreV1Api(client)
        core.create_namespace({"metadata": {"name": "ns"}})
        for i in range(5):
            meta = {"name": f"cm-{i}", "labels": {"kopflow.dev/run": "r"}}
            core.create_namespaced_config_map("ns", {"metadata": meta, "data": {"big": "x" * 999}})
        core.create_namespaced_config_map("ns", {"metadata": {"name": "unlabelled"}})
        monkeypatch.setattr(watch, "LIST_PAGE", 2)
        relisted: list[tuple[str, list[dict[str, Any]]]] = []
        watcher = watch.Watcher(
            client.configuration,
            "/api/v1/configmaps",
            "kopflow.dev/run",
            lambda *_: None,
            lambda ns, items: relisted.append((ns, items)),
            shrink=lambda body: {"name": body["metadata"]["name"]},
        )
        server.requests.reset()
        async with watcher._session() as session:
            version = await watcher._list(session, "")
        assert version.isdigit()
        assert relisted == [("", [{"name": f"cm-{i}"} for i in range(5)])]
        assert server.requests.counts[("list", "configmaps")] == 3  # 2 + 2 + 1
        client.close()
    finally:
        server.stop()
