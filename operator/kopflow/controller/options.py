"""`kopflow operator` flags for the API client and liveness, and their defaults.

Kept apart from client.py so that building the CLI parser imports neither kopf nor
kubernetes_asyncio."""

from __future__ import annotations

import argparse

DEFAULT_QPS = 200.0
DEFAULT_BURST = 400
"""client-go's 50/100 would cap a 1,000-run operator at ~20 task attempts a second (2.2 writes
each, plus reads); 200/400 stays well inside an API server's default priority-and-fairness
share for one workload while leaving that headroom. Both are flags."""
DEFAULT_PAGE_SIZE = 500
"""As client-go's reflector pages its initial lists."""
DEFAULT_HEALTH_BOUND = 60.0


def add_client_flags(p: argparse.ArgumentParser) -> None:
    """`kopflow operator` flags for the API client and liveness (controller/client.py)."""
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "--qps",
        type=float,
        default=DEFAULT_QPS,
        help=f"API requests per second, sustained (default {DEFAULT_QPS:g})",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=DEFAULT_BURST,
        help=f"API requests allowed at once above --qps (default {DEFAULT_BURST})",
    )
    p.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        help=f"objects per page when listing (default {DEFAULT_PAGE_SIZE})",
    )
    p.add_argument(
        "--health-host", default="0.0.0.0", help="address /healthz listens on (default all)"
    )
    p.add_argument(
        "--health-bound",
        type=float,
        default=DEFAULT_HEALTH_BOUND,
        help="seconds a watch may fail, or a run worker be stuck, before /healthz fails "
        f"(default {DEFAULT_HEALTH_BOUND:g})",
    )
