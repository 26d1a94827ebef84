"""The `kopflow` command: validate, run locally, operate a cluster, generate CRDs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kopflow import __version__, cachecmd, commands, logscmd

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _cmd_crds(args: argparse.Namespace) -> int:
    from kopflow.api import crd

    if args.stdout:
        sys.stdout.write("---\n".join(crd.render().values()))
        return EXIT_OK
    for path in [*crd.write(Path(args.output_dir)), crd.write_schemas()]:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from kopflow import manifests
    from kopflow.engine.podchecks import document_warnings
    from kopflow.engine.validation import validate_document

    bad = 0
    for file in args.files:
        try:
            docs = manifests.load(file)
        except manifests.ManifestError as err:
            print(f"error: {err}", file=sys.stderr)
            bad += 1
            continue
        if not docs:
            print(f"error: {file}: no YAML document", file=sys.stderr)
            bad += 1
        for doc in docs:
            issues = manifests.with_yaml_issues(doc, validate_document(doc.body))
            if issues:
                bad += 1
                print(f"{doc.label}: invalid", file=sys.stderr)
                for issue in issues:
                    print(f"  {issue}", file=sys.stderr)
            else:
                print(f"{doc.label}: valid")
            for warning in document_warnings(doc.body):
                print(f"{doc.label}: warning: {warning}", file=sys.stderr)
    return EXIT_INVALID if bad else EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from kopflow.executors import runcmd

    return runcmd.main(args)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from kopflow import backfill

    return backfill.main(args)


def _cmd_operator(args: argparse.Namespace) -> int:
    from kopflow.controller import main as operator_main

    return operator_main.run(args)


def _prog() -> str:
    """`kubectl kopflow` when run as the kubectl plugin (kubectl-kopflow), else `kopflow`."""
    return "kubectl kopflow" if Path(sys.argv[0]).name.startswith("kubectl-") else "kopflow"


def build_parser(validate_only: bool = False) -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and shell completion). `validate_only` stops
    after the first command, validate: main's shortcut for a command line starting with it
    (building every command's parser would cost `kopflow validate` 5% of its start-up)."""
    parser = argparse.ArgumentParser(
        prog=_prog(), description="Kubernetes-native workflows that also run on your laptop."
    )
    parser.add_argument("--version", action="version", version=f"kopflow {__version__}")
    commands.add_cluster_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check manifests; exit 0 when valid, 2 when not")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files (- for stdin)")
    p.set_defaults(func=_cmd_validate)
    if validate_only:
        return parser

    p = sub.add_parser("run", help="run a workflow on this machine, no cluster needed")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a Workflow, or a WorkflowRun (with the Workflow it references); - for stdin",
    )
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter"
    )
    p.add_argument("--parallelism", type=int, help="tasks at once (overrides spec.parallelism)")
    p.add_argument("--runtime", choices=["process", "podman"], default="process")
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="KEY=VALUE file standing in for the Secret/ConfigMap NAME (default: file stem)",
    )
    p.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="local folder for the task volume NAME (a PVC, or a Secret/ConfigMap's files)",
    )
    p.add_argument("--no-cache", action="store_true", help="ignore cached results")
    p.add_argument("--cache-dir", type=Path, help="cache directory (default ~/.cache/kopflow)")
    p.add_argument("--logs-dir", type=Path, help="where attempt logs go (default: a temp dir)")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument(
        "--schedule-time",
        metavar="T",
        help="{{ schedule.time }} of this run (RFC 3339; default: now)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while running (0: off)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "backfill", help="create the runs of a schedule's past slots (the operator's names)"
    )
    p.add_argument("workflow", metavar="WORKFLOW", help="name of a scheduled Workflow")
    p.add_argument("--from", dest="from_", required=True, metavar="T", help="first time (RFC 3339)")
    p.add_argument("--to", required=True, metavar="T", help="last time, inclusive (RFC 3339)")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("--max", type=int, default=100, help="refuse more slots than this (100)")
    p.add_argument("--dry-run", action="store_true", help="print the runs, create nothing")
    p.set_defaults(func=_cmd_backfill)

    p = sub.add_parser("operator", help="run the Kubernetes operator (kubeconfig or in-cluster)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    p.add_argument("--health-port", type=int, default=8080, help="liveness probe port (0: off)")
    p.add_argument(
        "--metrics-port", type=int, default=8081, help="Prometheus /metrics port (0: off)"
    )
    p.add_argument(
        "--metrics-host", default="0.0.0.0", help="address /metrics listens on (default all)"
    )
    p.add_argument("--json-logs", action="store_true", help="log JSON lines")
    p.add_argument("--verbose", action="store_true", help="log kopf's own decisions too")
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="run with other replicas: only the holder of a Lease acts (peering mode)",
    )
    p.add_argument(
        "--lease-namespace",
        default=None,
        help="namespace of the leader Lease (default: $POD_NAMESPACE or default)",
    )
    p.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="leader Lease duration; a dead leader is replaced after this (default 15)",
    )
    from kopflow.controller.options import add_client_flags

    add_client_flags(p)
    p.add_argument(
        "--cache-gc-per-minute",
        type=int,
        default=60,
        help="delete at most this many expired cache entries a minute (0: never; default 60)",
    )
    p.add_argument("--cache-gc-interval", type=float, default=60.0, help=argparse.SUPPRESS)
    # Tests and benchmarks only: the scheduler's clock runs RATE times faster from ANCHOR
    # (epoch seconds), so per-minute schedules fire every few seconds.
    p.add_argument("--clock-anchor", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--clock-rate", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_operator)

    cachecmd.add_parser(sub)
    logscmd.add_parser(sub)

    p = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    p.add_argument("--output-dir", default="crds", help="directory to write into (default crds)")
    p.add_argument("--stdout", action="store_true", help="print them instead of writing files")
    p.set_defaults(func=_cmd_crds)
    commands.add_commands(sub)
    return parser


def _short_lived() -> None:
    """No cyclic garbage collection in a `kopflow validate` process: the collector would walk
    the models' objects over and over while pydantic builds them, and all of them once more
    at exit (8% of the command's start-up), to free the little a process that ends at once
    leaves behind."""
    import atexit
    import gc

    gc.disable()
    atexit.register(gc.freeze)  # before the interpreter's last collection at exit


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kopflow` console script."""
    if argv is None and sys.argv[1:2] == ["validate"]:
        _short_lived()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(validate_only=argv[:1] == ["validate"]).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
