"""Cron slots and what a schedule does about them: pure, handed `now` and the runs it made.

Slots are computed on the wall clock of the schedule's time zone, then mapped to instants by
kopflow's own rules rather than croniter's time-zone handling (croniter 7 fires a wall-clock
slot twice when clocks go back):
- a wall time that occurs twice (clocks go back) is one slot, at its first occurrence;
- a wall time that does not exist (clocks go forward) fires at the first valid minute after it;
- wall times that land on the same instant are one slot.
So slots are strictly increasing instants, and a slot's name (its local wall time) is unique.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from kopflow.api.run import FINISHED_RUN_PHASES
from kopflow.api.workflow import API_VERSION, Schedule, WorkflowSpec
from kopflow.engine.naming import MAX_LABEL, _digest, _fit, label_value

WORKFLOW_LABEL = "kopflow.dev/workflow"
"""On every scheduled run: the Workflow whose schedule created it."""
SLOT_LABEL = "kopflow.dev/slot"
"""On every scheduled run: its slot, `YYYYMMDD-HHMM` in the schedule's time zone."""
SCAN_LIMIT = 1000
"""Slots looked at per decision: a long downtime of a per-minute schedule reports at least this
many missed slots instead of iterating over every one of them."""
NO_CATCH_UP_GRACE = 60
"""catchUp None without startingDeadlineSeconds: a slot later than this is Missed."""
_MAX_GAP_MINUTES = 24 * 60


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall time of an instant, to the minute."""
    return moment.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    aware = wall.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock slot fires: its first occurrence, or the first valid minute
    after it when the clocks skip it."""
    for _ in range(_MAX_GAP_MINUTES):
        if _exists(wall, tz):
            return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        wall += timedelta(minutes=1)
    raise ValueError(f"no valid local time near {wall} in {tz.key}")


def _cron(expr: str, start: datetime) -> croniter:
    return croniter(expr, start, day_or=True)


def slots_after(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Slots strictly after `after`, oldest first, as UTC instants (endless)."""
    tz = ZoneInfo(schedule.timezone)
    it = _cron(schedule.cron, _wall(after, tz))
    last = after
    while True:
        moment = instant(it.get_next(datetime), tz)
        if moment > last:
            last = moment
            yield moment


def slots_until(schedule: Schedule, until: datetime) -> Iterator[datetime]:
    """Slots at or before `until`, newest first, as UTC instants (endless)."""
    tz = ZoneInfo(schedule.timezone)
    local = until.astimezone(tz)
    start = _wall(until, tz) + timedelta(minutes=1)  # get_prev is exclusive
    if local.fold:
        # the second pass of a repeated hour: wall times up to an offset change later still
        # fired (at their first occurrence) before `until`
        shift = local.replace(fold=0).utcoffset() - local.utcoffset()  # type: ignore[operator]
        start += max(shift, timedelta(0))
    it = _cron(schedule.cron, start)
    previous: datetime | None = None
    while True:
        moment = instant(it.get_prev(datetime), tz)
        if moment <= until and moment != previous:
            previous = moment
            yield moment


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    return next(slots_after(schedule, after))


def slot_id(schedule: Schedule, slot: datetime) -> str:
    """`YYYYMMDD-HHMM` of the slot on the schedule's wall clock: readable and unique."""
    return slot.astimezone(ZoneInfo(schedule.timezone)).strftime("%Y%m%d-%H%M")


def slot_time(schedule: Schedule, slot: datetime) -> str:
    """The slot as RFC 3339 with the schedule's UTC offset (`2026-11-28T03:00:00+01:00`), so
    that `{{ schedule.date }}` is the schedule's local date; UTC is written `Z`."""
    local = slot.astimezone(ZoneInfo(schedule.timezone)).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def slot_text(text: str) -> str:
    """A user's time (RFC 3339; no offset means UTC) as scheduledTime, keeping its offset."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def run_body(workflow: str, uid: str | None, schedule: Schedule, slot: datetime) -> dict[str, Any]:
    """The WorkflowRun of one slot: named and labelled by the slot, owned by the Workflow (so
    deleting the Workflow deletes its scheduled runs)."""
    meta: dict[str, Any] = {
        "name": run_name(workflow, schedule, slot),
        "labels": {
            WORKFLOW_LABEL: label_value(workflow),
            SLOT_LABEL: slot_id(schedule, slot),
            "app.kubernetes.io/managed-by": "kopflow",
        },
    }
    if uid:
        meta["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "Workflow", "name": workflow, "uid": uid,
             "controller": True}
        ]  # fmt: skip
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": meta,
        "spec": {"workflowRef": {"name": workflow}, "scheduledTime": slot_time(schedule, slot)},
    }


def run_name(workflow: str, schedule: Schedule, slot: datetime) -> str:
    """`<workflow>-YYYYMMDD-HHMM`; a long workflow name is cut and a hash keeps it unique. The
    same slot always gives the same name: a 409 on create means the slot is taken."""
    suffix = "-" + slot_id(schedule, slot)
    name = workflow + suffix
    if len(name) <= MAX_LABEL:
        return name
    return _fit(workflow, suffix, _digest(workflow))


@dataclass(frozen=True)
class ScheduledRun:
    """A run a schedule created, as the operator last saw it."""

    name: str
    slot: datetime
    phase: str | None = None
    cancel: bool = False
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_RUN_PHASES


@dataclass
class Plan:
    """What to do now; every list is oldest slot first."""

    create: list[datetime] = field(default_factory=list)
    """Slots to create a run for."""
    missed: list[datetime] = field(default_factory=list)
    """Slots later than the starting deadline or beyond the catch-up bound: not run."""
    missed_more: int = 0
    """Further missed slots not listed (beyond SCAN_LIMIT)."""
    skipped: list[datetime] = field(default_factory=list)
    """Slots not run because concurrencyPolicy Forbid found a scheduled run active."""
    cancel: list[str] = field(default_factory=list)
    """Active runs to cancel (concurrencyPolicy Replace)."""
    delete: list[str] = field(default_factory=list)
    """Finished runs beyond the history limits, oldest first."""
    decided: datetime | None = None
    """The newest slot decided (run, skipped or missed): the next plan starts after it."""
    next: datetime | None = None
    """The next slot after now (None when suspended or unscheduled)."""
    recheck: datetime | None = None
    """When to decide again: the next slot, suspended or not (a suspended schedule passes
    over its slots as they come, so resuming does not report them missed)."""

    @property
    def missed_count(self) -> int:
        return len(self.missed) + self.missed_more


def _history(spec: WorkflowSpec, runs: Sequence[ScheduledRun]) -> list[str]:
    """Names of the oldest finished runs beyond successful/failedRunsHistoryLimit."""
    done = sorted((r for r in runs if r.finished), key=lambda r: r.slot, reverse=True)
    good = [r.name for r in done if r.phase == "Succeeded"]
    bad = [r.name for r in done if r.phase != "Succeeded"]
    excess = good[spec.successful_runs_history_limit :] + bad[spec.failed_runs_history_limit :]
    order = {r.name: r.slot for r in done}
    return sorted(excess, key=lambda n: order[n])


def plan(
    spec: WorkflowSpec,
    now: datetime,
    after: datetime,
    runs: Sequence[ScheduledRun] = (),
) -> Plan:
    """Decide the slots in (after, now]: `after` is the newest slot already decided, or the
    Workflow's creation time. `runs` are the runs the schedule created (any slot)."""
    result = Plan(delete=_history(spec, runs))
    schedule = spec.schedule
    if schedule is None:
        return result
    if schedule.suspend:
        # slots while suspended are not missed, they are not wanted: move past them
        newest = next(slots_until(schedule, now))
        result.decided = newest if newest > after else None
        result.recheck = next_slot(schedule, max(now, after))
        return result
    result.next = result.recheck = next_slot(schedule, max(now, after))
    due: list[datetime] = []
    more = False
    for slot in slots_until(schedule, now):
        if slot <= after:
            break
        if len(due) >= SCAN_LIMIT:
            more = True
            break
        due.append(slot)
    if not due:
        return result
    due.reverse()
    result.decided = due[-1]
    if more:
        result.missed_more = 1  # at least one more; the exact number is not worth iterating
    deadline = schedule.starting_deadline_seconds
    if schedule.catch_up == "None" and deadline is None:
        deadline = NO_CATCH_UP_GRACE
    in_time = [s for s in due if deadline is None or (now - s).total_seconds() <= deadline]
    if schedule.catch_up == "All":
        wanted = in_time[-schedule.max_catch_up :]
    else:
        wanted = in_time[-1:] if in_time and in_time[-1] == due[-1] else []
    result.missed = [s for s in due if s not in wanted]
    active = [r for r in runs if not r.finished]
    policy = schedule.concurrency_policy
    for slot in wanted:
        if policy == "Forbid" and (active or result.create):
            result.skipped.append(slot)
            continue
        if policy == "Replace":
            result.cancel = sorted({r.name for r in active if not r.cancel})
            if result.create:
                result.skipped.append(result.create.pop())
        result.create.append(slot)
    result.skipped.sort()
    return result
