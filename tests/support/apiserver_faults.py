"""Request accounting and fault injection for the emulator's HTTP layer.

The request log keeps counters (by verb and resource) and a short ring of recent requests, so
benchmarks and tests can ask "how many PATCHes did the operator send" in O(1) however long the
run. Faults are seeded, so a flaky-network test fails the same way every time it fails.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class RequestRecord:
    """One served request, as kept in the bounded ring of recent requests."""

    verb: str
    resource: str  # "pods", "jobs.batch", "pods/status", or the path for non-resource URLs
    namespace: str
    name: str
    code: int
    user_agent: str
    user: str = ""  # the authenticated user name (system:anonymous without credentials)
    injected: bool = False  # a fault the test asked for (a denial is no RBAC refusal)
    at: float = field(default_factory=time.time)  # when it was answered (wall clock)


class RequestLog:
    """Counters by (verb, resource) plus the last `keep` requests; never scanned in full."""

    def __init__(self, keep: int = 500) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.codes: Counter[int] = Counter()
        self.recent: deque[RequestRecord] = deque(maxlen=keep)
        self.forbidden: Counter[tuple[str, str, str]] = Counter()
        """(user, verb, resource) of every 403: what a client's RBAC lacked."""
        self.by_user: Counter[tuple[str, str, str]] = Counter()
        """(user, verb, resource) of every request RBAC let through: what a client's rules are
        used for (tests/integration/operator/test_rbac_usage.py lists the unused ones)."""
        self.total = 0
        self._lock = threading.Lock()

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.total += 1
            self.counts[(rec.verb, rec.resource)] += 1
            self.codes[rec.code] += 1
            self.recent.append(rec)
            if rec.code == 403 and not rec.injected:
                self.forbidden[(rec.user, rec.verb, rec.resource)] += 1
            else:
                self.by_user[(rec.user, rec.verb, rec.resource)] += 1

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests so far with this verb and/or resource (None matches any)."""
        with self._lock:
            if verb is not None and resource is not None:
                return self.counts[(verb, resource)]
            return sum(
                n
                for (v, r), n in self.counts.items()
                if (verb is None or v == verb) and (resource is None or r == resource)
            )

    def by_verb(self) -> dict[str, int]:
        with self._lock:
            out: Counter[str] = Counter()
            for (verb, _), n in self.counts.items():
                out[verb] += n
            return dict(out)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.codes.clear()
            self.recent.clear()
            self.total = 0


@dataclass
class FaultPlan:
    """Fractions of matching requests that fail, and which requests match."""

    conflict: float = 0.0  # 409 Conflict
    error: float = 0.0  # 500 InternalError
    throttle: float = 0.0  # 429 TooManyRequests with Retry-After
    slow: float = 0.0  # answered after `delay` seconds
    drop_watch: float = 0.0  # a watch stream cut after `drop_after` seconds
    deny: float = 0.0  # 403 as a validating admission webhook answers: `deny_message`
    deny_message: str = "policy forbids this object"
    deny_match: str | None = None  # deny only writes whose body contains this text
    delay: float = 0.2
    drop_after: float = 0.3
    verbs: frozenset[str] | None = None  # None: every verb
    resources: frozenset[str] | None = None  # None: every resource
    user_agent: str | None = None  # only requests whose User-Agent contains this


@dataclass
class FaultInjector:
    """Seeded chooser of injected faults; `injected` counts what was done, by kind."""

    seed: int = 0
    plan: FaultPlan = field(default_factory=FaultPlan)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def configure(self, seed: int | None = None, **plan: Any) -> None:
        """Replace the plan, e.g. configure(seed=1, conflict=0.2, verbs={"patch"})."""
        for key in ("verbs", "resources"):
            if plan.get(key) is not None:
                plan[key] = frozenset(plan[key])
        self.plan = FaultPlan(**plan)
        if seed is not None:
            self.rng = random.Random(seed)

    def clear(self) -> None:
        self.plan = FaultPlan()

    def _applies(self, verb: str, resource: str, user_agent: str) -> bool:
        p = self.plan
        return (
            (p.verbs is None or verb in p.verbs)
            and (p.resources is None or resource in p.resources)
            and (p.user_agent is None or p.user_agent in user_agent)
        )

    def choose(self, verb: str, resource: str, user_agent: str) -> str | None:
        """The transient fault for this request: conflict, error, throttle, slow, drop_watch or
        None. A webhook's denial is not one of them (see `denies`)."""
        if not self._applies(verb, resource, user_agent):
            return None
        p = self.plan
        roll = self.rng.random()
        kinds: list[tuple[str, float]] = [
            ("drop_watch", p.drop_watch if verb == "watch" else 0.0),
            # a real server answers 409 Conflict only to writes, never to a read or a list
            ("conflict", p.conflict if verb in ("create", "update", "patch", "delete") else 0.0),
            *((k, float(getattr(p, k))) for k in ("error", "throttle", "slow")),
        ]
        if verb == "watch":
            kinds = [*kinds[:1], ("slow", p.slow)]
        for kind, fraction in kinds:
            if roll < fraction:
                self.injected[kind] += 1
                return kind
            roll -= fraction
        return None

    def denies(self, verb: str, resource: str, user_agent: str, body: str = "") -> bool:
        """Whether the emulated validating webhook refuses this request (403), asked for every
        request that got past the transient faults. A webhook is policy, not chance: a write
        that was only slowed reaches admission like any other and is refused all the same.
        (When "slow" and "deny" shared one roll, a slowed write that `deny=1.0` should refuse
        was stored: test_restarts' doomed Job then ran and its task Succeeded.)"""
        p = self.plan
        if p.deny <= 0.0 or verb == "watch" or not self._applies(verb, resource, user_agent):
            return False
        if p.deny_match is not None:
            # matched against compact JSON: a webhook sees the object, not the client's spacing
            compact = body.replace('": ', '":').replace(", ", ",")
            if p.deny_match not in compact:
                return False
        if p.deny < 1.0 and self.rng.random() >= p.deny:
            return False
        self.injected["deny"] += 1
        return True
