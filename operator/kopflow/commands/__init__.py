"""The cluster commands of `kopflow` (submit, get, list, cancel, suspend, resume, retry, graph).

Only argparse is imported here: `kopflow --help` must stay fast. Each command's module (and
kubernetes_asyncio) is imported when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_cluster_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--kubeconfig, --context, -n/--namespace as kubectl has them. Given to the top-level
    parser (defaults) and to each cluster command (so they may follow the command too)."""
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("cluster access") if not top else parser
    group.add_argument(
        "--kubeconfig", default=default, metavar="FILE", help="kubeconfig (default $KUBECONFIG)"
    )
    group.add_argument(
        "--context", default=default, help="kubeconfig context (default: the current one)"
    )
    group.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace (default: the context's, else default)",
    )


def _cluster(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command handler that imports its module when run and gets a connected client."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        from kopflow.commands.common import run_command

        body = getattr(importlib.import_module(f"kopflow.commands.{module}"), function)
        return run_command(args, lambda kube: body(kube, args))

    return handler


def _graph(args: argparse.Namespace) -> int:
    from kopflow.commands.graph import graph

    return graph(args)


def _params(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter (repeatable); checked against the workflow first",
    )


def add_commands(sub: Any) -> None:
    """Register the cluster commands on the top-level subparsers."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        add_cluster_options(p)
        return p

    p = command("submit", "create a WorkflowRun of a Workflow (by name, or from a file)")
    p.add_argument("workflow", metavar="WORKFLOW", help="a Workflow of the namespace, or a file")
    _params(p)
    p.add_argument("--watch", "-w", action="store_true", help="follow it; exit 0/1 as it ends")
    p.add_argument("--name", help="name the run (default: generated, WORKFLOW-xxxxx)")
    p.set_defaults(func=_cluster("submit", "submit"))

    p = command("get", "show a run: its tasks in dependency order, outputs, messages")
    p.add_argument("run", metavar="RUN")
    p.add_argument("-o", "--output", choices=["text", "wide", "yaml", "json"], default="text")
    p.add_argument("--watch", "-w", action="store_true", help="follow it until it ends")
    p.set_defaults(func=_cluster("inspect", "get"))

    p = command("list", "list runs (oldest first)")
    p.add_argument("--workflow", help="only runs of this Workflow")
    p.add_argument("--phase", help="only runs in this phase (Running, Failed...)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="runs of every namespace")
    p.add_argument("-o", "--output", choices=["text", "wide", "yaml", "json"], default="text")
    p.set_defaults(func=_cluster("inspect", "list_runs"))

    for name, help in (
        ("cancel", "cancel a run: stop its running tasks, start nothing more"),
        ("suspend", "suspend a run: start no new task until resumed (running ones go on)"),
        ("resume", "resume a suspended run"),
    ):
        p = command(name, help)
        p.add_argument("run", metavar="RUN")
        p.set_defaults(func=_cluster("control", name))

    p = command("retry", "a new run reusing the outputs of the tasks that succeeded")
    p.add_argument("run", metavar="RUN", help="a finished run")
    p.add_argument(
        "--from",
        dest="from_task",
        metavar="TASK",
        help="run TASK and everything downstream again (default: what did not succeed)",
    )
    _params(p)
    p.add_argument("--watch", "-w", action="store_true", help="follow it; exit 0/1 as it ends")
    p.set_defaults(func=_cluster("retry", "retry"))

    p = command("graph", "draw the DAG of a run (coloured by phase) or of a workflow file")
    p.add_argument("source", metavar="RUN|FILE")
    p.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.add_argument("--out", metavar="FILE", help="write there instead of standard output")
    p.set_defaults(func=_graph)
