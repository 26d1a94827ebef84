"""`kopflow cancel|suspend|resume RUN`: set the spec switches the operator honours.

`spec.cancel: true` stops the running attempts and cancels the rest; `spec.suspend: true`
starts nothing new (running tasks go on) until it is false again.
"""

from __future__ import annotations

import argparse

from kopflow.cliclient import CliError, Kube
from kopflow.commands.common import EXIT_OK, finished


async def _unfinished(kube: Kube, name: str, verb: str) -> dict[str, object]:
    run = await kube.get("workflowruns", name)
    if finished(run):
        phase = run["status"]["phase"]
        raise CliError(f'workflowrun "{name}" already finished ({phase}); nothing to {verb}')
    return run


async def cancel(kube: Kube, args: argparse.Namespace) -> int:
    await _unfinished(kube, args.run, "cancel")
    await kube.patch("workflowruns", args.run, {"spec": {"cancel": True}})
    print(f"workflowrun/{args.run} cancel requested", flush=True)
    return EXIT_OK


async def suspend(kube: Kube, args: argparse.Namespace) -> int:
    await _unfinished(kube, args.run, "suspend")
    await kube.patch("workflowruns", args.run, {"spec": {"suspend": True}})
    print(f"workflowrun/{args.run} suspended: no new task starts; running ones go on", flush=True)
    return EXIT_OK


async def resume(kube: Kube, args: argparse.Namespace) -> int:
    run = await _unfinished(kube, args.run, "resume")
    spec = run.get("spec") or {}
    if not (isinstance(spec, dict) and spec.get("suspend")):
        print(f"workflowrun/{args.run} was not suspended", flush=True)
        return EXIT_OK
    await kube.patch("workflowruns", args.run, {"spec": {"suspend": False}})
    print(f"workflowrun/{args.run} resumed", flush=True)
    return EXIT_OK
