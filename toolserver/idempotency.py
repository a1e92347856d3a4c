"""Idempotent writes (architecture rule 6): one key per action, target and trigger.

claim() is race-safe across processes: the key is a unique column, so of many concurrent
claims exactly one INSERT wins. The others see the winner's row: its result when done, a
conflict when their arguments differ, or they wait a bounded time while it runs. A running
claim whose lease ran out (its worker died) may be taken over by exactly one caller; the
taker first asks the backend whether the write already happened (toolserver.gateway), so exactly
once does not rest on the backend deduplicating on the key. A key settled `outcome_unknown` (the
backend could not tell) changes only by a person's word: confirm_done() or confirm_not_done().
A write's success frees the key of the write it reverses (ToolSpec.undoes: release_host after
isolate_host, enable_account after disable_account) for the same target and alert, so that write,
asked for again, is sent again rather than replayed as done.
"""

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import renewed_every
from toolserver.catalog import ServerSpec, ToolSpec, find_tool
from toolserver.envelope import Reason
from toolserver.models import IdempotencyRecord
from toolserver.schemas import StrictArgs

POLL_INTERVAL_S = 0.05
GIVEN_UP = ""  # the claim token of a key whose holder gave up on an answer (give_up): no run's, nor renewed
TARGET_SHOWN = 200  # ActionRequest.target's length: the target as people read it; the key holds all of it


@dataclass(frozen=True)
class WriteKey:
    key: str
    target: str
    fingerprint: str


@dataclass(frozen=True)
class Claimed:
    token: str
    taken_over: bool = False  # from a dead holder, whose write may have reached the backend


@dataclass(frozen=True)
class Prior:
    """The first call's stored envelope (success or permanent failure)."""

    result: dict
    completed_at: object


@dataclass(frozen=True)
class Conflict:
    result: dict | None


@dataclass(frozen=True)
class InProgress:
    pass


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def write_key(tool: ToolSpec, args: StrictArgs, trigger: str) -> WriteKey:
    values = args.model_dump()
    target = ", ".join(f"{name}={_canonical(values[name])}" for name in tool.target_fields) or "alert"
    material = {
        name: _canonical(value) if name in tool.target_fields else value
        for name, value in values.items()
        if name not in tool.free_text
    }
    return WriteKey(
        key=_digest(tool.name, target, trigger),
        target=_shown(target),
        fingerprint=_digest(json.dumps(material, sort_keys=True, default=str)),
    )


def _shown(target: str) -> str:
    """The target as people read it, cut and marked when long: an external tool's may be a whole list
    (server-memory's entities, with their observations). A built-in's, which _free_undone recomputes a key
    from, is a host or an account name, never cut."""
    return target if len(target) <= TARGET_SHOWN else target[: TARGET_SHOWN - 1] + "\u2026"


def _canonical(value) -> str:
    # Hostnames and account names are case-insensitive on the backends we front. An external tool's
    # target may be a list or an object (server-memory's `entities`): its JSON, keys sorted, so the same
    # target is one key however the model ordered its keys.
    if isinstance(value, str):
        return value.lower()
    return json.dumps(value, sort_keys=True, default=str)


def claim(server: ServerSpec, tool: ToolSpec, write: WriteKey, trigger: str, *, wait_s: float | None = None):
    wait_s = settings.TOOLSERVER_WRITE_WAIT_S if wait_s is None else wait_s
    token = uuid.uuid4().hex
    lease = timedelta(seconds=settings.TOOLSERVER_WRITE_LEASE_S)
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                key=write.key,
                server=server.name,
                tool=tool.name,
                target=write.target,
                trigger=trigger,
                fingerprint=write.fingerprint,
                claim_token=token,
                lease_until=timezone.now() + lease,
            )
        return Claimed(token)
    except IntegrityError:
        pass

    deadline = time.monotonic() + wait_s
    waited = False
    while (record := IdempotencyRecord.objects.filter(key=write.key).first()) is not None:
        given_up = record.state == IdempotencyRecord.State.RUNNING and record.claim_token == GIVEN_UP
        if given_up and waited:
            break  # its holder gave up while this caller waited: as for a row freed meanwhile, below
        # Given up, no request stands: the action asked again in other words is this caller's to send, once
        # the backend says the first did not happen (toolserver.gateway._check_done).
        if record.fingerprint != write.fingerprint and not given_up:
            return Conflict(record.result)
        if record.state != IdempotencyRecord.State.RUNNING:
            return Prior(record.result, record.completed_at)
        if record.lease_until < timezone.now() and _take_over(record, token, lease, write.fingerprint):
            return Claimed(token, taken_over=True)
        if time.monotonic() >= deadline:
            return InProgress()
        time.sleep(POLL_INTERVAL_S)
        waited = True
    # Its row went (or its holder gave up) while this caller waited: the holder's write failed transiently; a
    # person confirmed it not done; the write reversing it succeeded. Not sent from here at once: the caller
    # tries again, as for a write still running, and reads its own state first (an approved request the
    # holder's run has just failed is not sent by its re-run).
    return InProgress()


def _take_over(record: IdempotencyRecord, token: str, lease: timedelta, fingerprint: str) -> bool:
    """Exactly one caller wins an abandoned claim: the guard is in the WHERE clause. The key holds the taker's
    arguments from then (the same, but for a given-up key asked for again in other words)."""
    now = timezone.now()
    won = IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.RUNNING, claim_token=record.claim_token, lease_until__lt=now
    ).update(claim_token=token, lease_until=now + lease, attempts=record.attempts + 1, fingerprint=fingerprint)
    return won == 1


def renew(key: str, token: str) -> bool:
    """A running write's worker is alive: its claim stays its own for another lease. Fenced by the
    claim's token: a claim taken over is renewed by its new holder alone, and a dead holder's claim,
    which a caller waits to take over, by nobody."""
    until = timezone.now() + timedelta(seconds=settings.TOOLSERVER_WRITE_LEASE_S)
    running = IdempotencyRecord.objects.filter(key=key, claim_token=token, state=IdempotencyRecord.State.RUNNING)
    return running.update(lease_until=until) == 1


def renewed(write: WriteKey, token: str):
    """While the block sends the claimed write (a backend may take long), its claim is renewed every
    third of GATEHOUSE_WRITE_LEASE_S, so only a dead worker's claim runs out."""
    return renewed_every(
        settings.TOOLSERVER_WRITE_LEASE_S / 3, lambda: renew(write.key, token), name=f"write-claim-{write.key[:12]}"
    )


def complete(write: WriteKey, token: str, result: dict, *, failed: bool) -> None:
    """Store the outcome (success, or a permanent failure) for every repeat to receive."""
    stored = IdempotencyRecord.objects.filter(key=write.key, claim_token=token).update(
        state=IdempotencyRecord.State.FAILED if failed else IdempotencyRecord.State.SUCCEEDED,
        result=result,
        completed_at=timezone.now(),
    )
    if stored and not failed:
        _free_undone(write.key)


def _free_undone(key: str) -> None:
    """The write under `key` succeeded: the succeeded write it reverses (ToolSpec.undoes), for the same
    target and alert, no longer describes the backend. Its key is freed, so asking for it again sends it
    (through the gate and a fresh approval) instead of replaying a result that is no longer true."""
    record = IdempotencyRecord.objects.filter(key=key).first()
    if record is None:  # the write reversing this one succeeded meanwhile, and freed this key in turn
        return
    found = find_tool(record.tool)
    if found is None or not found[1].undoes:
        return
    undone = _digest(found[1].undoes, record.target, record.trigger)
    IdempotencyRecord.objects.filter(key=undone, state=IdempotencyRecord.State.SUCCEEDED).delete()


def release(write: WriteKey, token: str) -> None:
    """A transient failure that never reached the backend: free the key so that a retry can run."""
    IdempotencyRecord.objects.filter(key=write.key, claim_token=token, state=IdempotencyRecord.State.RUNNING).delete()


def give_up(write: WriteKey, token: str) -> None:
    """A transient failure after the write was sent (a timeout, a 5xx, its server gone mid-call): it may have
    happened all the same. The key stays claimed, by nobody and its lease over, so the next run to send it
    takes it over as from a dead holder, and asks the backend first whether it happened (toolserver.gateway)."""
    IdempotencyRecord.objects.filter(key=write.key, claim_token=token, state=IdempotencyRecord.State.RUNNING).update(
        claim_token=GIVEN_UP, lease_until=timezone.now()
    )


def given_up(key: str) -> int | None:
    """How many runs held the write under `key`, if the last gave up on its answer (give_up); None otherwise."""
    return _given_up(key).values_list("attempts", flat=True).first()


def settle_unknown(key: str, result: dict) -> bool:
    """A given-up write that is not to be tried again: settled `outcome_unknown` (`result`), for a person's word
    (confirm_done, confirm_not_done). False when another run took the key over meanwhile."""
    settled = _given_up(key).update(state=IdempotencyRecord.State.FAILED, result=result, completed_at=timezone.now())
    return settled == 1


def _given_up(key: str):
    return IdempotencyRecord.objects.filter(key=key, state=IdempotencyRecord.State.RUNNING, claim_token=GIVEN_UP)


def _outcome_unknown(key: str):
    """The key, if it was settled as outcome_unknown (toolserver.gateway): the one state a person's word changes."""
    return IdempotencyRecord.objects.filter(
        key=key, state=IdempotencyRecord.State.FAILED, result__reason=Reason.OUTCOME_UNKNOWN
    )


def confirm_done(key: str, result: dict) -> bool:
    """A person checked the backend: the write whose outcome was unknown happened. The key now holds
    `result`, which every repeat of the action receives, as if the write had been settled at the time."""
    confirmed = _outcome_unknown(key).update(
        state=IdempotencyRecord.State.SUCCEEDED, result=result, completed_at=timezone.now()
    )
    if confirmed:
        _free_undone(key)
    return bool(confirmed)


def confirm_not_done(key: str) -> bool:
    """A person checked the backend: the write did not happen. The key is freed, so the action may be
    asked for again (through the gate and a fresh approval), and then sent once."""
    deleted, _ = _outcome_unknown(key).delete()
    return bool(deleted)
