"""The investigation's state machine: each transition one guarded, atomic database update.

    queued --claim--> running --finish--> completed | failed
    queued --end_unstarted--> failed   (held, its integration revoked)
    running --suspend--> waiting --resume--> queued;  running --give_back--> queued
    running --(worker dies; lease expires)--> claimed again by the next worker

Investigation.TRANSITIONS is that machine: every function here that changes a status checks the
move against it (_check) before touching the row, and its WHERE clause holds the status it comes from.

A worker claims an investigation by taking its lease; every later write is fenced by the
lease token, so a worker that stalled and was replaced cannot write over its successor.
"""

import logging
import operator
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from functools import reduce

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core import transitions
from core.db import own_connection, release_connection
from investigations.models import Alert, Budgets, Event, Investigation
from investigations.runs import events
from investigations.runs.events import LeaseLost

log = logging.getLogger(__name__)
Status = Investigation.Status
CLAIMABLE = (Status.QUEUED, Status.RUNNING)
# The leases this process's workers hold now (investigation id -> lease token): what the lease keeper
# renews and hand_back() gives back.
_held: dict[int, str] = {}
_held_lock = threading.Lock()
_keeper: threading.Thread | None = None


def start_investigation(alert: Alert, *, requested_by=None, hold: bool = False) -> Investigation:
    """A queued investigation of `alert`, handed to a worker once the transaction commits; or, `hold`,
    kept queued until `release` hands it over (its integration's start cap, investigations/intake/services.py)."""
    from investigations.runs.llm import model_id
    from investigations.tasks import run_investigation

    budgets = Budgets.current()
    investigation = Investigation.objects.create(
        alert=alert,
        model=model_id(),
        budget_tool_calls=budgets.tool_calls,
        budget_tokens=budgets.tokens,
        budget_seconds=budgets.seconds,
        requested_by=requested_by,
        released_at=None if hold else timezone.now(),
    )
    message = "Queued: held until its integration's start cap allows it." if hold else "Queued for a worker."
    events.record_event(investigation.pk, Event.Kind.STATUS, {"status": Status.QUEUED, "message": message})
    if not hold:
        transaction.on_commit(lambda: run_investigation.delay(investigation.pk))
    return investigation


def release(investigation_ids: list[int]) -> list[int]:
    """Hand held investigations to workers once the transaction commits; those released already are skipped,
    so none is handed over twice. Returns the ids released now."""
    from investigations.tasks import run_investigation

    released = []
    for investigation_id in investigation_ids:
        # One row per update: of two releasers, the second finds it released and hands nothing over.
        if Investigation.objects.filter(pk=investigation_id, status=Status.QUEUED, released_at__isnull=True).update(
            released_at=timezone.now()
        ):
            released.append(investigation_id)
            events.record_event(
                investigation_id, Event.Kind.STATUS, {"status": Status.QUEUED, "message": "Released to a worker."}
            )
    transaction.on_commit(lambda: [run_investigation.delay(investigation_id) for investigation_id in released])
    return released


def end_unstarted(investigation_ids: list[int], reason: str) -> list[int]:
    """End held investigations no worker has started (failed, with `reason`): those released meanwhile are
    skipped. Returns the ids ended now."""
    _check(Status.QUEUED, Status.FAILED)
    ended = []
    for investigation_id in investigation_ids:
        held = Investigation.objects.filter(pk=investigation_id, status=Status.QUEUED, released_at__isnull=True)
        if held.update(status=Status.FAILED, end_reason=reason, finished_at=timezone.now()):
            ended.append(investigation_id)
            events.record_event(investigation_id, Event.Kind.STATUS, {"status": Status.FAILED, "message": reason})
    return ended


def investigate_again(alert: Alert, *, requested_by) -> Investigation | None:
    """A new investigation of `alert`, unless one is still in progress (None): one at a time per alert."""
    with transaction.atomic():
        Alert.objects.select_for_update().get(pk=alert.pk)  # two requests at once: one starts
        if alert.investigations.exclude(status__in=Investigation.FINAL).exists():
            return None
        return start_investigation(alert, requested_by=requested_by)


def claim(investigation_id: int) -> str | None:
    """Take the lease of a queued investigation, or of a running one whose worker stopped renewing it.

    Returns the lease token, or None when it is finished, waiting, or held by a live worker.
    """
    for status in CLAIMABLE:
        _check(status, Status.RUNNING)
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        Investigation.objects.filter(pk=investigation_id, status__in=CLAIMABLE)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .update(status=Status.RUNNING, lease_owner=token, lease_expires_at=now + _lease())
    )
    return token if claimed else None


def renew_held() -> int:
    """Renew every lease this process holds, in one UPDATE; how many were renewed. A lease another
    worker took meanwhile is not (its holder's next fenced write raises LeaseLost)."""
    with _held_lock:
        held = dict(_held)
    if not held:
        return 0
    rows = reduce(operator.or_, (Q(pk=pk, lease_owner=owner) for pk, owner in held.items()))
    try:
        return Investigation.objects.filter(rows).update(lease_expires_at=timezone.now() + _lease())
    finally:
        release_connection()


def save(investigation_id: int, owner: str, **fields) -> None:
    """Write the lease holder's progress; raises LeaseLost when another worker holds it now.

    A lease is held only while running, so a new status is a move from running (checked, and held
    in the WHERE clause)."""
    rows = Investigation.objects.filter(pk=investigation_id, lease_owner=owner)
    if "status" in fields:
        _check(Status.RUNNING, fields["status"])
        rows = rows.filter(status=Status.RUNNING)
    if not rows.update(**fields):
        raise LeaseLost(investigation_id)


def finish(
    investigation_id: int,
    owner: str,
    *,
    status: str,
    verdict: str = "",
    summary: str = "",
    evidence: list | None = None,
    end_reason: str = "",
) -> None:
    """End the investigation, release its lease, and tell its viewers."""
    with transaction.atomic():
        save(
            investigation_id,
            owner,
            status=status,
            verdict=verdict,
            summary=summary,
            evidence=evidence or [],
            end_reason=end_reason,
            finished_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
        )
        ended = []  # published together once committed: who may see it is read once for both
        if status == Status.COMPLETED:
            ended.append(
                events.record_event(
                    investigation_id,
                    Event.Kind.VERDICT,
                    {"verdict": verdict, "summary": summary, "evidence": evidence or [], "end_reason": end_reason},
                    published=False,
                )
            )
        message = end_reason or ("Completed." if status == Status.COMPLETED else "Failed.")
        ended.append(
            events.record_event(
                investigation_id, Event.Kind.STATUS, {"status": status, "message": message}, published=False
            )
        )
        transaction.on_commit(lambda: events.publish(*ended))
        from investigations.approvals.services import (
            cancel_pending,  # the gate's module imports this one
        )

        cancel_pending(investigation_id, f"the investigation {status}: {message}")


def suspend(investigation_id: int, owner: str, *, waiting_for: str, **fields) -> None:
    """Wait for an analyst's decision: release the worker, keep the state. Resumes at once if decided already."""
    with transaction.atomic():
        save(
            investigation_id,
            owner,
            status=Status.WAITING,
            lease_owner="",
            lease_expires_at=None,
            waiting_since=timezone.now(),
            **fields,
        )
        events.record_event(investigation_id, Event.Kind.STATUS, {"status": Status.WAITING, "message": waiting_for})
    resume(investigation_id)  # a decision taken before we suspended found nothing to resume


def resume(investigation_id: int) -> bool:
    """Queue a waiting investigation again once none of its action requests is undecided or running."""
    from investigations.models import ActionRequest
    from investigations.tasks import run_investigation

    with transaction.atomic():
        undecided = ActionRequest.objects.filter(investigation_id=investigation_id).exclude(
            state__in=ActionRequest.FINAL
        )
        if undecided.exists():
            return False
        waiting = Investigation.objects.select_for_update().filter(pk=investigation_id, status=Status.WAITING).first()
        if waiting is None:
            return False
        waited = (timezone.now() - waiting.waiting_since).total_seconds() if waiting.waiting_since else 0
        _check(Status.WAITING, Status.QUEUED)
        Investigation.objects.filter(pk=investigation_id, status=Status.WAITING).update(
            status=Status.QUEUED, waiting_since=None, waited_seconds=waiting.waited_seconds + waited
        )
        events.record_event(
            investigation_id, Event.Kind.STATUS, {"status": Status.QUEUED, "message": "Decided: resuming."}
        )
        transaction.on_commit(lambda: run_investigation.delay(investigation_id))
    return True


def holding(investigation_id: int, owner: str) -> None:
    """Note that this process works on it under `owner`; its lease is kept from now."""
    global _keeper
    with _held_lock:
        _held[investigation_id] = owner
        if _keeper is None or not _keeper.is_alive():
            _keeper = threading.Thread(target=_keep_leases, name="lease-keeper", daemon=True)
            _keeper.start()


@contextmanager
def held(investigation_id: int, owner: str):
    """While the block runs, this process keeps the investigation's lease (and hands it back if it stops)."""
    holding(investigation_id, owner)
    try:
        yield
    finally:
        let_go(investigation_id, owner)


def let_go(investigation_id: int, owner: str) -> None:
    """This process no longer works on it under `owner`: unless another run here took it over since (its lease
    lost, the sweep handed it to another thread), whose lease is kept on."""
    with _held_lock:
        if _held.get(investigation_id) == owner:
            del _held[investigation_id]


def _keep_leases() -> None:
    """The process's one lease keeper: every third of a lease, all its leases renewed at once, so
    hundreds of investigations in flight cost one thread and one query, not one of each apiece.
    Only a process that stopped (or stalled past a lease) loses its investigations to another. Its
    connection is its own, not the pool's, opened for each renewal: behind hundreds of threads waiting
    for a pooled one, a renewal could come after the lease ran out, and a live investigation be handed
    to another worker, which would make again the calls whose results this one had not kept yet."""
    own_connection()
    while True:
        time.sleep(settings.INVESTIGATION_LEASE_S / 3)
        try:
            renew_held()
        except Exception:  # the database away for a moment: the next round tries again, within the lease
            log.warning("could not renew this worker's leases", exc_info=True)


def hand_back() -> list[int]:
    """The process is stopping: queue again what its workers are running, lease released, so the
    next worker resumes each from its last saved step at once instead of after the lease.
    The abandoned run's next write finds the lease gone (LeaseLost)."""
    with _held_lock:
        held = dict(_held)
    return [pk for pk, owner in held.items() if give_back(pk, owner, "Handed back by a stopping worker.")]


def give_back(investigation_id: int, owner: str, message: str) -> bool:
    """Queue it again, lease released, for a worker to resume from its last saved step; False when
    `owner` does not hold it (any more)."""
    _check(Status.RUNNING, Status.QUEUED)
    with transaction.atomic():
        if not Investigation.objects.filter(pk=investigation_id, lease_owner=owner, status=Status.RUNNING).update(
            status=Status.QUEUED, lease_owner="", lease_expires_at=None
        ):
            return False
        events.record_event(investigation_id, Event.Kind.STATUS, {"status": Status.QUEUED, "message": message})
    return True


def stalled(*, queued_for_s: float = 0) -> list[int]:
    """Investigations no worker is running: queued (and released) for a while, or running under an expired lease."""
    now = timezone.now()
    queued = Q(status=Status.QUEUED, released_at__lte=now - timedelta(seconds=queued_for_s))  # held ones wait
    abandoned = Q(status=Status.RUNNING, lease_expires_at__lt=now)
    return list(Investigation.objects.filter(queued | abandoned).order_by("created_at").values_list("pk", flat=True))


def decided_but_waiting(*, waiting_for_s: float = 0) -> list[int]:
    """Waiting investigations none of whose requests is undecided: the resume that follows a request's final
    state (its own transaction, after) was lost, the process stopped or the database away between the two."""
    from investigations.models import ActionRequest

    undecided = ActionRequest.objects.filter(investigation=OuterRef("pk")).exclude(state__in=ActionRequest.FINAL)
    since = timezone.now() - timedelta(seconds=waiting_for_s)
    waiting = Investigation.objects.filter(status=Status.WAITING, waiting_since__lte=since)
    return list(waiting.exclude(Exists(undecided)).order_by("created_at").values_list("pk", flat=True))


def _check(from_status: str, to_status: str) -> None:
    """Refuse (IllegalTransition) a move Investigation.TRANSITIONS does not allow, before any row is touched."""
    transitions.check(Investigation.TRANSITIONS, from_status, to_status, what="an investigation")


def _lease() -> timedelta:
    return timedelta(seconds=settings.INVESTIGATION_LEASE_S)
