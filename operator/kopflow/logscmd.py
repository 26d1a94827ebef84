"""`kopflow logs RUN [TASK] [--attempt N] [-f]`: the pod logs of a run's task attempts.

Read with the user's own kubeconfig and rights (the operator never reads logs: its RBAC has no
pods/log). An attempt's pod is found by the `batch.kubernetes.io/job-name` label of its Job,
whose name is deterministic (engine.naming.job_name of run, task, attempt and the run's uid), so
earlier attempts are found too. Without TASK every task's last attempt is printed in dependency
order, each line prefixed with `[task] `.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    from kubernetes_asyncio import client

    from kopflow import cliclient

Obj = dict[str, Any]
# asyncio, json and the client are imported where used: `kopflow --help` must start fast.
CONTAINER = "main"
"""The task container of every attempt's pod (executors.kubernetes.CONTAINER)."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
START_WAIT_SECONDS = 60.0
"""With -f, how long to wait for an attempt's container to start before giving up."""
POLL_SECONDS = 0.5
FOLLOW_POLL_SECONDS = 1.0
"""-f without TASK: how often the run is re-read while waiting for a task's next attempt."""
FINAL_TASK = ("Succeeded", "Failed", "Skipped", "Cancelled")
FINAL_RUN = ("Succeeded", "Failed", "Cancelled", "Invalid")


class LogsError(Exception):
    """A message for the user (`error: ...`); the command exits 1."""


def add_parser(sub: Any) -> None:
    """Register `logs` with the cluster options (--kubeconfig, --context, -n) of the others."""
    from kopflow.commands import add_cluster_options

    p = sub.add_parser("logs", help="print the pod logs of a run's task attempts")
    add_cluster_options(p)
    p.add_argument("run", metavar="RUN", help="WorkflowRun name")
    p.add_argument("task", nargs="?", metavar="TASK", help="one task (default: every task)")
    p.add_argument("--attempt", type=int, metavar="N", help="attempt N of TASK (default: last)")
    p.add_argument("-f", "--follow", action="store_true", help="stream until the pod ends")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point of `kopflow logs`: connected as the other cluster commands are
    (commands.common.run_command, cliclient.connect)."""
    from kopflow.cliclient import CliError
    from kopflow.commands.common import run_command

    if args.attempt is not None and not args.task:
        print("error: --attempt needs a TASK (kopflow logs RUN TASK --attempt N)", file=sys.stderr)
        return 2
    if args.attempt is not None and args.attempt < 1:
        print(f"error: --attempt {args.attempt}: attempts count from 1", file=sys.stderr)
        return 2

    async def body(kube: Any) -> int:
        try:
            return await _main(kube, args)
        except LogsError as err:
            sys.stdout.flush()
            raise CliError(str(err)) from None

    return run_command(args, body)


def _message(err: Any) -> str:
    """The API's own words from an ApiException (its Status message), else its reason."""
    import json

    try:
        return str(json.loads(err.body or err.reason).get("message") or err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.reason)


def _forbidden(verb: str, what: str, namespace: str) -> LogsError:
    sub = what.split("/", 1)
    check = f"kubectl auth can-i {verb} {sub[0]}" + (
        f" --subresource={sub[1]}" if len(sub) > 1 else ""
    )
    return LogsError(
        f"forbidden: your kubeconfig's user may not {verb} {what} in namespace {namespace}; "
        f"it needs the right `{verb}` on `{what}` (check: {check} -n {namespace})"
    )


async def _main(kube: cliclient.Kube, args: argparse.Namespace) -> int:
    from kubernetes_asyncio import client

    run: Obj = await kube.run(args.run)  # CliError: missing, forbidden...
    core, batch = client.CoreV1Api(kube.api), client.BatchV1Api(kube.api)
    logs = _RunLogs(core, batch, kube.custom, run, kube.namespace)
    if args.task:
        await logs.task(args.task, args.attempt, args.follow, prefix="")
        return 0
    return await logs.all(args.follow)


class _RunLogs:
    def __init__(
        self,
        core: client.CoreV1Api,
        batch: client.BatchV1Api,
        custom: client.CustomObjectsApi,
        run: Obj,
        namespace: str,
    ) -> None:
        from kopflow.commands.common import task_order

        self.core, self.batch, self.custom = core, batch, custom
        self.run, self.namespace = run, namespace
        self.name = str(run["metadata"]["name"])
        self.uid = str(run["metadata"].get("uid") or "")
        status = run.get("status") or {}
        self.tasks: dict[str, Obj] = status.get("tasks") or {}
        self.order = task_order(
            status.get("workflow") or (run.get("spec") or {}).get("workflow"), self.tasks
        )

    async def all(self, follow: bool) -> int:
        """Every task's last attempt, in dependency order, lines prefixed `[task] `. A task
        without a readable pod is reported on stderr; exit 1 if any was."""
        if follow:
            return await self._follow_all()
        missing = 0
        names = [n for n in self.order if (self.tasks.get(n) or {}).get("attempts")]
        if not names:
            phase = (self.run.get("status") or {}).get("phase") or "Pending"
            raise LogsError(f"run {self.name} ({phase}) has started no task attempt yet")
        for name in names:
            missing += await self._task_or_report(name, follow)
        return 1 if missing else 0

    async def _task_or_report(self, name: str, follow: bool) -> int:
        """A task's last attempt, prefixed `[task] `; 1 when its pod cannot be read (said on
        stderr, so that the other tasks are still printed), else 0."""
        try:
            await self.task(name, None, follow, prefix=f"[{name}] ")
        except LogsError as err:
            sys.stdout.flush()
            print(f"[{name}] error: {err}", file=sys.stderr)
            return 1
        return 0

    async def _follow_all(self) -> int:
        """-f without TASK: each task in dependency order, each of its attempts as it runs,
        re-reading the run while waiting, until every task is final or the run has ended."""
        import asyncio

        missing = 0
        for name in list(self.order):
            followed = 0
            while True:
                status = self.tasks.get(name) or {}
                attempts = int(status.get("attempts") or 0)
                if attempts > followed:
                    followed = attempts
                    missing += await self._task_or_report(name, True)
                    await self._refresh()
                    continue
                run_phase = (self.run.get("status") or {}).get("phase")
                if status.get("phase") in FINAL_TASK or run_phase in FINAL_RUN:
                    break
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
                await self._refresh()
        return 1 if missing else 0

    async def _refresh(self) -> None:
        from kubernetes_asyncio import client

        from kopflow.api.workflow import GROUP, VERSION

        try:
            self.run = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "workflowruns", self.name
            )
        except client.ApiException as err:
            raise LogsError(f"reading WorkflowRun {self.name}: {_message(err)}") from None
        self.tasks = (self.run.get("status") or {}).get("tasks") or {}

    async def task(self, task: str, attempt: int | None, follow: bool, *, prefix: str) -> None:
        status = self.tasks.get(task)
        if status is None:
            known = ", ".join(self.order) or "none yet"
            raise LogsError(f'run {self.name} has no task "{task}" (its tasks: {known})')
        attempts = int(status.get("attempts") or 0)
        if attempts == 0:
            phase = status.get("phase") or "Pending"
            why = "its result came from the cache" if status.get("cached") else f"it is {phase}"
            raise LogsError(f"task {task} of run {self.name} has run no attempt: {why}")
        n = attempt or attempts
        if n > attempts:
            raise LogsError(
                f"task {task} of run {self.name} has no attempt {n}: "
                f"it has {attempts} (--attempt 1..{attempts})"
            )
        from kopflow.engine.naming import job_name

        job = job_name(self.name, task, n, self.uid)
        if n == attempts and status.get("jobName"):
            job = str(status["jobName"])
        what = f"attempt {n} of task {task}"
        pod = await self._pod(job, what)
        if follow:
            pod = await self._started(pod, what)
        await self._stream(pod, what, follow, prefix)

    async def _pod(self, job: str, what: str) -> str:
        """The name of the attempt's pod (the newest, if its Job made several)."""
        from kubernetes_asyncio import client

        try:
            pods = await self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}"
            )
        except client.ApiException as err:
            if err.status == 403:
                raise _forbidden("list", "pods", self.namespace) from None
            raise LogsError(f"listing the pods of {what}: {_message(err)}") from None
        items = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)
        if not items:
            why = await self._why_gone(job)
            raise LogsError(
                f"the pod of {what} (Job {job}) is gone: {why}; its logs can no longer be read"
            )
        return str(items[-1].metadata.name)

    async def _why_gone(self, job: str) -> str:
        """Why an attempt has no pod, as far as the user may see: its Job is gone, or only the
        pod."""
        from kubernetes_asyncio import client

        try:
            found = await self.batch.read_namespaced_job(job, self.namespace)
        except client.ApiException as err:
            if err.status == 404:
                return (
                    "its Job was deleted (by its ttlSecondsAfterFinished, a retry that replaced "
                    "a lost attempt, or by hand)"
                )
            return "its Job or pod was deleted"
        ttl = found.spec.ttl_seconds_after_finished if found.spec else None
        return "its pod was deleted" + (
            f" (the Job has ttlSecondsAfterFinished={ttl})" if ttl is not None else ""
        )

    async def _started(self, pod: str, what: str) -> str:
        """Wait (bounded) until the pod's task container has started, for -f."""
        import asyncio

        from kubernetes_asyncio import client

        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WAIT_SECONDS
        while True:
            try:
                obj = await self.core.read_namespaced_pod(pod, self.namespace)
            except client.ApiException as err:
                if err.status == 404:
                    raise LogsError(f"the pod {pod} of {what} is gone") from None
                raise LogsError(f"reading pod {pod}: {_message(err)}") from None
            for c in (obj.status and obj.status.container_statuses) or []:
                if c.name == CONTAINER and c.state and (c.state.running or c.state.terminated):
                    return pod
            if loop.time() > deadline:
                raise LogsError(
                    f"the container of {what} (pod {pod}) has not started "
                    f"after {START_WAIT_SECONDS:.0f} s"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _stream(self, pod: str, what: str, follow: bool, prefix: str) -> None:
        from kubernetes_asyncio import client

        try:
            resp: aiohttp.ClientResponse = await self.core.read_namespaced_pod_log(  # type: ignore[assignment]
                pod, self.namespace, container=CONTAINER, follow=follow, _preload_content=False
            )
        except client.ApiException as err:
            raise _refusal(err, pod, what, self.namespace) from None
        if resp.status >= 400:  # not raised without _preload_content
            text = await resp.text()
            resp.release()
            raise _refusal(
                client.ApiException(status=resp.status, reason=text), pod, what, self.namespace
            )
        out, tag, rest = sys.stdout.buffer, prefix.encode(), b""
        async with resp:
            async for chunk in resp.content.iter_any():
                if not prefix:
                    out.write(chunk)
                else:
                    *lines, rest = (rest + chunk).split(b"\n")
                    out.writelines(tag + line + b"\n" for line in lines)
                out.flush()
        if rest:
            out.write(tag + rest + b"\n")
            out.flush()


def _refusal(err: Any, pod: str, what: str, namespace: str) -> LogsError:
    """The user's words for a refused pods/log request."""
    if err.status == 403:
        return _forbidden("get", "pods/log", namespace)
    if err.status == 404:
        return LogsError(f"the pod {pod} of {what} is gone: {_message(err)}")
    return LogsError(f"{what} (pod {pod}): {_message(err)}")
