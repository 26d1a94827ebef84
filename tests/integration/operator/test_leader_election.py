"""Two replicas with --leader-elect: only the Lease holder acts; when it dies the other one
takes over and the run still finishes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.operator.conftest import Cluster, Kube, Operator
from tests.integration.operator.test_metrics import scrape_until, value

from kopflow.engine.naming import job_name
from kopflow.engine.times import parse_time

LEASE_SECONDS = "3"


@pytest.fixture
def replicas(cluster: Cluster, tmp_path: Path) -> Iterator[list[Operator]]:
    ops = [
        Operator(
            cluster, tmp_path / f"op{i}.log", "--leader-elect", "--lease-seconds", LEASE_SECONDS
        )
        for i in range(2)
    ]
    for op in ops:
        op.start()
    try:
        yield ops
    finally:
        for op in ops:
            op.stop()


def job_creators(kube: Kube) -> list[int]:
    """pids of the replicas that created Jobs, in request order (the emulator's request log)."""
    return [
        int(m.group(1))
        for r in kube.server.requests.recent
        if r.verb == "create"
        and r.resource == "jobs.batch"
        and r.code == 201
        and (m := re.search(r"\(pid (\d+)\)", r.user_agent))
    ]


def start_chain(
    kube: Kube, replicas: list[Operator], name: str, tasks: int, seconds: float
) -> tuple[Operator, Operator]:
    """A run of `tasks` sequential sleeps, once its second task runs: (leader, follower)."""
    chain = [
        {
            "name": f"s{i}",
            "command": ["python3", "-c", f"import time; time.sleep({seconds})"],
            **({"dependsOn": [f"s{i - 1}"]} if i else {}),
        }
        for i in range(tasks)
    ]
    kube.create(
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"name": name},
            "spec": {"workflow": {"taskDefaults": {"image": "busybox"}, "tasks": chain}},
        }
    )
    kube.wait_task(name, "s1", "Running", timeout=30)
    lease = kube.lease()
    assert lease is not None
    leader = next(op for op in replicas if f"_{op.pid}_" in lease["spec"]["holderIdentity"])
    return leader, next(op for op in replicas if op is not leader)


def test_only_the_leader_acts_and_a_follower_takes_over(
    replicas: list[Operator], kube: Kube
) -> None:
    leader, follower = start_chain(kube, replicas, "ha", tasks=6, seconds=0.7)
    emulated = kube.cluster.emulator is not None
    if emulated:
        assert set(job_creators(kube)) == {leader.pid}
    # only the leader reports the cluster: a sum over replicas counts the run once
    lead, follow = leader.metrics(), follower.metrics()
    assert (value(lead, "kopflow_leader"), value(follow, "kopflow_leader")) == (1, 0)
    assert value(lead, "kopflow_runs_active", namespace=kube.ns) == 1
    assert value(follow, "kopflow_runs_active", namespace=kube.ns) == 0
    leader.kill()
    run = kube.wait_run("ha", timeout=60)
    assert run["status"]["phase"] == "Succeeded"
    uid = run["metadata"]["uid"]
    assert sorted(kube.created_jobs) == sorted(job_name("ha", f"s{i}", 1, uid) for i in range(6))
    assert set(kube.created_jobs.values()) == {1}  # no Job created twice across the handover
    if emulated:
        creators = job_creators(kube)
        assert len(creators) == 6
        switch = creators.index(follower.pid)
        assert set(creators[:switch]) == {leader.pid}
        assert set(creators[switch:]) == {follower.pid}
    lease = kube.lease()
    assert lease is not None and f"_{follower.pid}_" in lease["spec"]["holderIdentity"]
    text = scrape_until(follower, lambda t: value(t, "kopflow_runs_total", namespace=kube.ns) > 0)
    assert value(text, "kopflow_runs_total", namespace=kube.ns, phase="Succeeded") == 1
    assert value(text, "kopflow_runs_active", namespace=kube.ns) == 0


WRITES = frozenset({"create", "update", "patch", "delete"})


@pytest.mark.emulator_only("cuts one replica off from its Lease by fault injection")
def test_a_leader_cut_off_from_its_lease_stops_writing_before_the_other_takes_over(
    replicas: list[Operator], kube: Kube
) -> None:
    leader, follower = start_chain(kube, replicas, "fenced", tasks=16, seconds=0.3)
    # the leader's Lease requests hang (a partition between it and the API, for the Lease);
    # its writes to runs and Jobs still get through, so only its own fencing can stop them
    kube.server.faults.configure(
        slow=1.0,
        delay=8.0,
        resources={"leases.coordination.k8s.io"},
        user_agent=f"pid {leader.pid}",
    )

    def taken() -> float | None:
        held = kube.lease()
        if held is None or f"_{follower.pid}_" not in (held["spec"]["holderIdentity"] or ""):
            return None
        return parse_time(held["spec"]["acquireTime"]).timestamp()

    acquired = kube.wait(taken, 30, "the follower acquiring the Lease")
    run = kube.wait_run("fenced", timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    late = [
        (r.verb, r.resource, r.name, round(r.at - acquired, 3))
        for r in kube.server.requests.recent
        if f"(pid {leader.pid})" in r.user_agent
        and r.verb in WRITES
        and not r.resource.startswith(("leases", "events"))
        and r.at >= acquired
    ]
    assert late == []
    assert set(kube.created_jobs.values()) == {1}
