"""Task outputs: `key=value` lines, declared keys only, small enough for a termination message.

The limits keep the run's status small (2,000 tasks must fit in one etcd object) and match
what a Kubernetes termination message can carry (4 KiB).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_VALUE_BYTES = 1024
MAX_TOTAL_BYTES = 4096


class OutputsError(ValueError):
    """The outputs an attempt wrote break a limit; the attempt counts as failed."""


def parse_outputs(text: str | None, declared: Iterable[str]) -> dict[str, str]:
    """The declared outputs found in text; later lines win, other lines are ignored.

    A line is `key=value`: the key is trimmed, the value kept verbatim (it may contain `=`).
    """
    wanted = set(declared)
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key in wanted:
            found[key] = value.rstrip("\r")
    total = 0
    for key, value in found.items():
        size = len(value.encode())
        if size > MAX_VALUE_BYTES:
            raise OutputsError(
                f'output "{key}" is {size} bytes, over the limit of {MAX_VALUE_BYTES} bytes '
                "(1 KiB); write large data to storage and output its location"
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise OutputsError(
            f"outputs total {total} bytes, over the limit of {MAX_TOTAL_BYTES} bytes (4 KiB); "
            "write large data to storage and output its location"
        )
    return found
