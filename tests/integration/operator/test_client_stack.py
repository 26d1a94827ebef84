"""The operator process over its one client stack: a token that dies mid-run, throttling,
paged lists, and a /healthz that fails while a watch keeps failing (docs/design.md,
"Client stack")."""

from __future__ import annotations

import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.operator.conftest import (
    OPERATOR_SA,
    Cluster,
    Kube,
    Operator,
    free_port,
)


def chain(name: str, tasks: int = 2) -> dict[str, Any]:
    """A run of `tasks` quick tasks one after another."""
    steps = [
        {
            "name": f"t{i}",
            "command": ["python3", "-c", "pass"],
            **({"dependsOn": [f"t{i - 1}"]} if i else {}),
        }
        for i in range(tasks)
    ]
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflow": {"taskDefaults": {"image": "python:3.12-slim"}, "tasks": steps}},
    }


@pytest.fixture
def started(cluster: Cluster, tmp_path: Path) -> Iterator[list[Operator]]:
    """Operators a test starts itself (other flags, or after some setup); stopped after."""
    ops: list[Operator] = []
    yield ops
    for op in ops:
        op.stop()
        if op.log.exists():
            print(op.log.read_text()[-20000:])


def start(started: list[Operator], cluster: Cluster, tmp_path: Path, *args: str) -> Operator:
    op = Operator(cluster, tmp_path / f"operator-{len(started)}.log", *args)
    started.append(op)
    op.start()
    return op


@pytest.mark.emulator_only("expires a token and reads the request log")
def test_a_token_that_dies_mid_run_leads_to_a_new_login(
    cluster: Cluster, kube: Kube, started: list[Operator], tmp_path: Path
) -> None:
    """The operator's ServiceAccount token expires and its kubeconfig names a new one (as a
    credential rotation does): kopflow's requests and kopf's watches log in again."""
    server = kube.server
    # kopf's watch streams end every few seconds, so kopf has to reconnect, and log in again
    server.faults.configure(drop_watch=1.0, drop_after=2.0, verbs={"watch"}, user_agent="kopf/")
    start(started, cluster, tmp_path)
    kube.create(chain("before"))
    assert kube.wait_run("before", "Succeeded", "Failed")["status"]["phase"] == "Succeeded"
    path = cluster.operator_kubeconfig
    config = yaml.safe_load(path.read_text())
    old = config["users"][0]["user"]["token"]
    config["users"][0]["user"]["token"] = server.token(cluster.namespace, OPERATOR_SA)
    path.write_text(yaml.safe_dump(config))
    server.expire_token(old)
    expired = time.time()

    def kopf_back() -> bool:
        """kopf was refused (a watch reconnecting), logged in again, and watches again."""
        after = [r for r in server.requests.recent if r.at >= expired]
        kopf = [r for r in after if r.user_agent.startswith("kopf/")]
        refused = [r.at for r in kopf if r.code == 401]  # (a 401 is logged before its verb)
        return bool(refused) and any(
            r.code == 200 and r.verb == "watch" and r.at > refused[0] for r in kopf
        )

    deadline = time.monotonic() + 30  # the request log can only be polled
    while not kopf_back() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kopf_back(), "kopf did not log in again after its token expired"
    # the identity is shared: kopflow's own requests use the token kopf's re-login read
    kube.create(chain("after"))
    assert kube.wait_run("after", "Succeeded", "Failed")["status"]["phase"] == "Succeeded"


@pytest.mark.emulator_only("injects 429s and reads the request log")
def test_job_creates_throttled_with_429_wait_for_retry_after(
    cluster: Cluster, kube: Kube, started: list[Operator], tmp_path: Path
) -> None:
    kube.server.faults.configure(
        seed=3, throttle=0.5, verbs={"create"}, resources={"jobs.batch"}, user_agent="kopflow/"
    )
    start(started, cluster, tmp_path)
    kube.create(chain("throttled", tasks=4))
    assert kube.wait_run("throttled", "Succeeded", "Failed")["status"]["phase"] == "Succeeded"
    creates = [r for r in kube.server.requests.recent if r.resource == "jobs.batch"]
    creates = [r for r in creates if r.verb == "create"]
    assert any(r.code == 429 for r in creates), "no 429 was injected: the test proves nothing"
    for a, b in itertools.pairwise(creates):
        if a.code == 429:  # Retry-After: 1 (the emulator's), honoured before the next try
            assert b.at - a.at >= 0.95, (a, b)
    assert {n: c for n, c in kube.created_jobs.items() if c > 1} == {}


def test_runs_listed_in_pages_smaller_than_their_number_all_run(
    cluster: Cluster, kube: Kube, started: list[Operator], tmp_path: Path
) -> None:
    """Runs created before the operator starts reach it through a paged list (page size 1)."""
    names = [f"paged-{i}" for i in range(3)]
    for name in names:
        kube.create(chain(name, tasks=1))
    start(started, cluster, tmp_path, "--page-size", "1")
    for name in names:
        assert kube.wait_run(name, "Succeeded", "Failed")["status"]["phase"] == "Succeeded"
    if cluster.emulator is not None:
        lists = [
            r.user_agent.split("/")[0]
            for r in cluster.emulator.requests.recent
            if r.verb == "list" and r.resource == "workflowruns.kopflow.dev"
        ]
        # one page per run, at least, for kopf's watch and for kopflow's own resync alike
        assert lists.count("kopf") >= len(names), lists
        assert lists.count("kopflow") >= len(names), lists


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0  # not listening yet


def wait_health(port: int, wanted: bool, timeout: float) -> float:
    """Seconds until /healthz says `wanted` (polled: nothing to watch; bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        code = healthz(port)
        if code and (200 <= code < 300) == wanted:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"/healthz not {'healthy' if wanted else 'failing'} in {timeout}s")


@pytest.mark.emulator_only("makes the Pod watch fail with fault injection")
def test_healthz_fails_while_a_watch_keeps_failing_and_recovers(
    cluster: Cluster, kube: Kube, started: list[Operator], tmp_path: Path
) -> None:
    bound = 3.0
    kube.server.faults.configure(
        drop_watch=1.0, drop_after=0.2, verbs={"watch"}, resources={"pods"}, user_agent="kopflow/"
    )
    port = free_port()
    args = ("--health-port", str(port), "--health-host", "127.0.0.1")
    start(started, cluster, tmp_path, *args, "--health-bound", str(bound))
    # kopf caches a passing probe for 10 s: failing within bound + 10 s (+ start-up)
    wait_health(port, wanted=False, timeout=bound + 10 + 15)
    kube.server.faults.clear()
    # the watch's back-off is at most 5 s; one that streams again is healthy at once
    wait_health(port, wanted=True, timeout=5 + 10)
    kube.create(chain("healthy-again", tasks=1))
    assert kube.wait_run("healthy-again", "Succeeded", "Failed")["status"]["phase"] == "Succeeded"


@pytest.mark.emulator_only("counts the operator's requests in the request log")
def test_runs_of_a_watched_workflow_start_without_reading_it(
    cluster: Cluster, kube: Kube, started: list[Operator], tmp_path: Path
) -> None:
    """In a burst every request before a run's first Job delays it: a Workflow the operator
    already watches is taken from its watch, not read again for each run."""
    start(started, cluster, tmp_path)
    workflow = {**chain("w", tasks=1), "kind": "Workflow"}
    workflow["spec"] = workflow["spec"]["workflow"]
    kube.create(workflow)
    kube.wait_workflow_status("w")  # the operator's watch has it (it validated it)
    names = [kube.run_ref(f"byref-{i}", "w")["metadata"]["name"] for i in range(3)]
    for name in names:
        assert kube.wait_run(name)["status"]["phase"] == "Succeeded"
    account = f"system:serviceaccount:{kube.ns}:{OPERATOR_SA}"
    reads = kube.server.requests.by_user[(account, "get", "workflows.kopflow.dev")]
    assert reads == 0, f"{reads} reads of a Workflow the operator watches"
