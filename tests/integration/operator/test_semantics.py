"""Run semantics under the operator: timeouts, cancel, suspend, parallelism, failure, input."""

from __future__ import annotations

from typing import Any

from tests.integration.operator.conftest import Kube, Operator

PY = "python3"


def run_doc(name: str, spec: dict[str, Any], **run_spec: Any) -> dict[str, Any]:
    workflow = {"taskDefaults": {"image": "python:3.12-slim"}, **spec}
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflow": workflow, **run_spec},
    }


def sleeper(name: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": [PY, "-c", f"import time; time.sleep({seconds})"], **extra}


def test_task_timeout_stops_the_job_and_fails(operator: Operator, kube: Kube) -> None:
    kube.create(run_doc("slow", {"tasks": [sleeper("nap", 60, timeoutSeconds=1)]}))
    run = kube.wait_run("slow", timeout=30)
    task = run["status"]["tasks"]["nap"]
    assert run["status"]["phase"] == "Failed"
    assert task["reason"] == "Timeout"
    assert "timeoutSeconds=1" in task["message"]
    kube.wait_no_jobs()  # the Job was deleted


def test_run_deadline_fails_with_deadline_exceeded(operator: Operator, kube: Kube) -> None:
    spec = {
        "activeDeadlineSeconds": 2,
        "tasks": [sleeper("long", 60), sleeper("next", 0, dependsOn=["long"])],
    }
    kube.create(run_doc("late", spec))
    run = kube.wait_run("late", timeout=30)
    assert run["status"]["phase"] == "Failed"
    assert run["status"]["reason"] == "DeadlineExceeded"
    assert run["status"]["tasks"]["next"]["phase"] == "Skipped"
    kube.wait_no_jobs()


def test_cancel_stops_running_jobs_and_cancels_the_rest(operator: Operator, kube: Kube) -> None:
    kube.create(run_doc("c", {"tasks": [sleeper("a", 60), sleeper("b", 0, dependsOn=["a"])]}))
    kube.wait_task("c", "a", "Running")
    kube.patch_run("c", {"cancel": True})
    run = kube.wait_run("c", timeout=30)
    assert run["status"]["phase"] == "Cancelled"
    assert {t["phase"] for t in run["status"]["tasks"].values()} == {"Cancelled"}
    kube.wait_no_jobs()


def test_suspend_holds_new_tasks_until_resumed(operator: Operator, kube: Kube) -> None:
    spec = {"tasks": [sleeper("a", 0.5), sleeper("b", 0, dependsOn=["a"])]}
    kube.create(run_doc("s", spec, suspend=True))
    run = kube.wait_run("s", "Running")
    assert all(t["phase"] == "Pending" for t in run["status"]["tasks"].values())
    assert kube.jobs() == []
    kube.patch_run("s", {"suspend": False})
    assert kube.wait_run("s", timeout=30)["status"]["phase"] == "Succeeded"


def test_parallelism_bounds_concurrent_jobs(operator: Operator, kube: Kube) -> None:
    tasks = [sleeper(f"t{i}", 0.4) for i in range(6)]
    kube.create(run_doc("p", {"parallelism": 2, "tasks": tasks}))
    peak = [0]

    def track() -> bool:
        # Processes running at once, as the node reports them (a real Job controller marks a
        # Job Complete about a second after its pod ended, so Job conditions lag behind).
        pods = kube.watched_pods()
        running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        peak[0] = max(peak[0], running)
        ended = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        return len(ended) == 6

    kube.wait(track, timeout=60, what="six pods ran to completion")
    assert peak[0] == 2
    assert kube.wait_run("p")["status"]["phase"] == "Succeeded"


def test_failure_skips_dependents_then_runs_on_failure(operator: Operator, kube: Kube) -> None:
    spec = {
        "tasks": [
            {"name": "boom", "command": [PY, "-c", "import sys; sys.exit(5)"]},
            sleeper("after", 0, dependsOn=["boom"]),
        ],
        "onFailure": [sleeper("notify", 0)],
    }
    kube.create(run_doc("f", spec))
    run = kube.wait_run("f")
    status = run["status"]
    assert status["phase"] == "Failed" and "boom" in status["message"]
    assert status["tasks"]["boom"]["exitCode"] == 5
    assert status["tasks"]["after"]["reason"] == "UpstreamFailed"
    assert status["tasks"]["notify"]["phase"] == "Succeeded"
    assert status["conditions"][0]["status"] == "False"


def ref_doc(name: str, workflow: str, **run_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow}, **run_spec},
    }


def test_a_run_waits_for_its_workflow_and_starts_when_it_appears(
    operator: Operator, kube: Kube
) -> None:
    """`kubectl apply -f dir/` creates runs before their Workflow: the run waits, Pending."""
    kube.create(ref_doc("early", "late"))
    kube.create(ref_doc("hopeless", "never", workflowWaitSeconds=2))
    pending = kube.wait(
        lambda: (
            (r := kube.run("early")).get("status", {}).get("reason") == "WorkflowNotFound" and r
        ),
        30,
        "early waiting",
    )
    assert pending["status"]["phase"] == "Pending"
    assert 'Workflow "late" not found' in pending["status"]["message"]
    kube.wait_event("early", "WorkflowNotFound")
    workflow = {"taskDefaults": {"image": "python:3.12-slim"}, "tasks": [sleeper("t", 0)]}
    kube.create(
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "late"},
            "spec": workflow,
        }
    )
    assert kube.wait_run("early", timeout=30)["status"]["phase"] == "Succeeded"
    hopeless = kube.wait_run("hopeless", timeout=30)["status"]
    assert hopeless["phase"] == "Invalid"
    assert hopeless["message"].startswith('spec.workflowRef.name: Workflow "never" not found')


def test_invalid_runs_end_invalid_with_an_event_and_no_jobs(operator: Operator, kube: Kube) -> None:
    kube.create(ref_doc("ghost", "nope", workflowWaitSeconds=0))
    cyclic = {"tasks": [sleeper("a", 0, dependsOn=["b"]), sleeper("b", 0, dependsOn=["a"])]}
    kube.create(run_doc("cycle", cyclic))
    kube.create(
        run_doc(
            "badparam",
            {
                "parameters": [{"name": "mode", "enum": ["a", "b"], "default": "a"}],
                "tasks": [sleeper("x", 0)],
            },
            parameters={"mode": "c"},
        )
    )
    ghost = kube.wait_run("ghost")["status"]
    assert ghost["phase"] == "Invalid"
    assert ghost["message"].startswith('spec.workflowRef.name: Workflow "nope" not found')
    cycle = kube.wait_run("cycle")["status"]
    assert cycle["phase"] == "Invalid"
    assert "dependency cycle a -> b -> a" in cycle["message"]
    assert "spec.workflow.tasks[0].dependsOn" in cycle["message"]
    bad = kube.wait_run("badparam")["status"]
    assert (
        bad["phase"] == "Invalid"
        and 'spec.parameters.mode: "c" is not an allowed' in bad["message"]
    )
    kube.wait_event("ghost", "RunInvalid")
    assert kube.jobs() == []


def test_templates_in_command_or_script_end_invalid_with_the_field(
    operator: Operator, kube: Kube
) -> None:
    """The CRD cannot afford these checks on a real server (CEL cost): the operator makes them,
    for runs (phase Invalid, RunInvalid) and Workflows (Valid=False, InvalidWorkflow)."""
    params = {"parameters": [{"name": "who", "default": "x"}]}
    in_command = {**params, "tasks": [{"name": "a", "command": ["echo", "{{ params.who }}"]}]}
    in_script = {
        **params,
        "tasks": [
            sleeper("ok", 0),
            {"name": "b", "script": {"command": [PY], "source": "print('{{params.who}}')"}},
        ],
    }
    kube.create(run_doc("in-command", in_command))
    kube.create(run_doc("in-script", in_script))
    for name, path in (
        ("in-command", "spec.workflow.tasks[0].command[1]"),
        ("in-script", "spec.workflow.tasks[1].script.source"),
    ):
        status = kube.wait_run(name)["status"]
        assert status["phase"] == "Invalid"
        assert status["message"].startswith(f"{path}: templates are not allowed here")
        kube.wait_event(name, "RunInvalid")
    workflow = run_doc("wf", in_script)["spec"]["workflow"]
    kube.create(
        {"apiVersion": "kopflow.dev/v1alpha1", "kind": "Workflow",
         "metadata": {"name": "wf"}, "spec": workflow}
    )  # fmt: skip
    wf = kube.wait_workflow_status("wf")
    (valid,) = wf["status"]["conditions"]
    assert valid["status"] == "False"
    assert valid["message"].startswith("spec.tasks[1].script.source: templates are not allowed")
    kube.wait_event("wf", "InvalidWorkflow")
    assert kube.jobs() == []


def test_workflow_gets_a_valid_condition(operator: Operator, kube: Kube) -> None:
    kube.create_file("etl.yaml")
    wf = kube.wait_workflow_status("etl")
    (cond,) = wf["status"]["conditions"]
    assert cond["type"] == "Valid" and cond["status"] == "True"
    kube.create(
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "broken"},
            "spec": {"tasks": [{"name": "a", "command": ["true"], "dependsOn": ["zz"]}]},
        }
    )
    broken = kube.wait_workflow_status("broken")
    (cond,) = broken["status"]["conditions"]
    assert cond["status"] == "False"
    assert 'spec.tasks[0].dependsOn[0]: unknown task "zz"' in cond["message"]
    assert "spec.tasks[0].image: no image" in cond["message"]


def test_finished_runs_are_deleted_after_their_ttl(operator: Operator, kube: Kube) -> None:
    kube.create(run_doc("ttl", {"ttlSecondsAfterFinished": 1, "tasks": [sleeper("a", 0)]}))
    kube.wait_run("ttl")
    kube.wait_run_gone("ttl")
    # The garbage collector deletes the run's Jobs; a real one learns of a new CRD's kind by
    # rediscovery every 30 s, so in a cluster whose CRDs are seconds old this takes that long.
    kube.wait_no_jobs(timeout=60)
