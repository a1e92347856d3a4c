"""Telling the enabled channels of request changes, recorded per channel and request, retried with backoff.

Invariants:
- A change is announced only once the transaction that made it commits (`announce_on_commit`, called by
  the gate for every transition): a request rolled back is never told of.
- One `ChannelDelivery` per (request, channel, kind): it is `sent` only after the channel's `notify`
  returned, so nothing is ever marked told that was not. A failure is logged as one line, recorded
  (`failed`, attempts, last_error, next_attempt_at) and tried again by the sweep after a backoff.
- A delivery is claimed before it is sent, by moving `next_attempt_at` forward (a lease of CLAIM_S):
  two sweeps never send the same one, and one whose sender died is tried again once the lease ends.
  A send is bounded (the webhook's whole send by SEND_DEADLINE_S, well inside the lease; the email's
  each SMTP step by EMAIL_TIMEOUT), and an attempt records its outcome only while the row still holds
  its own claim (`next_attempt_at` as it set it): an attempt that outlived its lease never overwrites
  what a later one recorded.
- A `waiting` or `overdue` message not sent before the request was decided is dropped, not sent late.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from investigations.approvals.channels import base
from investigations.approvals.channels.base import Change, DeliveryFailed, Kind, Undeliverable
from investigations.models import ActionRequest, ChannelDelivery

log = logging.getLogger(__name__)
Delivery = ChannelDelivery
State = ChannelDelivery.State
CLAIM_S = 60  # longer than any channel's whole send
RETRY_FIRST_S = 30  # then doubled per failed attempt,
RETRY_MAX_S = 3600  # up to an hour,
MAX_ATTEMPTS = 10  # and given up after this many (state failed, next_attempt_at null)
WHILE_WAITING = (Kind.WAITING, Kind.OVERDUE)


def kind_of(from_state: str, to_state: str) -> Kind | None:
    """The change a transition is, for the channels (None: none they are told of)."""
    Request = ActionRequest.State
    if not from_state and to_state == Request.PENDING:
        return Kind.WAITING
    if from_state == Request.PENDING and to_state != Request.PENDING:
        return Kind.DECIDED
    if to_state in (Request.SUCCEEDED, Request.FAILED):
        return Kind.FINISHED
    return None


def announce_on_commit(request_id: int, from_state: str, to_state: str) -> None:
    """Called by the gate at every transition, inside its transaction (architecture rule 9's requests)."""
    kind = kind_of(from_state, to_state)
    if kind is None or not any(kind in channel.wants for channel in base.outbound()):
        return
    transaction.on_commit(lambda: announce(request_id, kind), robust=True)


def announce(request_id: int, kind: Kind) -> list[int]:
    """Record one pending delivery per enabled channel that wants `kind`, and hand them to a worker
    (the sweep sends any a lost task left behind). Returns the deliveries' ids."""
    from investigations.tasks import deliver_notifications

    ids = _record(request_id, kind, [channel.name for channel in base.outbound() if kind in channel.wants])
    if ids:
        try:
            deliver_notifications.delay(ids)
        except Exception:  # noqa: BLE001 - no broker now, whatever the reason: the sweep sends them
            log.warning(
                "could not hand %d delivery(ies) of action request %s to a worker; the sweep sends them",
                len(ids),
                request_id,
            )
    return ids


def _record(request_id: int, kind: Kind, channels: list[str]) -> list[int]:
    now = timezone.now()
    Delivery.objects.bulk_create(
        [Delivery(request_id=request_id, channel=name, kind=kind, next_attempt_at=now) for name in channels],
        ignore_conflicts=True,  # told once: a change announced again is not sent again
    )
    return list(
        Delivery.objects.filter(
            request_id=request_id, kind=kind, channel__in=channels, state=State.PENDING
        ).values_list("pk", flat=True)
    )


def sweep() -> list[int]:
    """The periodic sweep: record the overdue notices due, then try every delivery due (new ones, and
    failed ones whose backoff ended). Returns the ids of the deliveries sent."""
    _record_overdue()
    due = Delivery.objects.filter(state__in=(State.PENDING, State.FAILED), next_attempt_at__lte=timezone.now())
    return deliver(list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)))


def _record_overdue() -> None:
    if not settings.APPROVAL_NOTIFY_AFTER_S:
        return
    waited = timezone.now() - timedelta(seconds=settings.APPROVAL_NOTIFY_AFTER_S)
    for channel in base.outbound():
        if Kind.OVERDUE not in channel.wants:
            continue
        told = Delivery.objects.filter(request=OuterRef("pk"), channel=channel.name, kind=Kind.OVERDUE)
        due = ActionRequest.objects.filter(state=ActionRequest.State.PENDING, created_at__lte=waited).exclude(
            Exists(told)
        )
        for request_id in due.values_list("pk", flat=True):
            _record(request_id, Kind.OVERDUE, [channel.name])


def deliver(delivery_ids: list[int]) -> list[int]:
    """Try each delivery that is due and unclaimed (the task after a change, and the sweep); returns the sent."""
    channels = {channel.name: channel for channel in base.outbound()}
    sent = []
    for delivery_id in delivery_ids:
        delivery = _claim(delivery_id)
        if delivery is None or delivery.channel not in channels:
            continue  # another sweep has it, it is done, or its channel is no longer enabled
        if _attempt(delivery, channels[delivery.channel]):
            sent.append(delivery.pk)
    return sent


def _claim(delivery_id: int) -> ChannelDelivery | None:
    now = timezone.now()
    due = Q(pk=delivery_id, state__in=(State.PENDING, State.FAILED), next_attempt_at__lte=now)
    if not Delivery.objects.filter(due).update(next_attempt_at=now + timedelta(seconds=CLAIM_S)):
        return None
    return Delivery.objects.select_related("request__investigation__alert").get(pk=delivery_id)


def _attempt(delivery: ChannelDelivery, channel: base.OutboundChannel) -> bool:
    request = delivery.request
    attempts = delivery.attempts + 1
    if delivery.kind in WHILE_WAITING and request.state != ActionRequest.State.PENDING:
        _finish(delivery, State.DROPPED, attempts - 1, "not sent: the request was decided first")
        return False
    try:
        channel.notify(Change(request=request, kind=Kind(delivery.kind), delivery_id=delivery.pk))
    except Undeliverable as nothing:
        _finish(delivery, State.DROPPED, attempts, str(nothing))
        return False
    except Exception as failure:  # noqa: BLE001 - a channel's own fault is a failed attempt too: retried, then given up
        # A DeliveryFailed says what failed without a secret; another exception's text might hold one.
        why = str(failure)[:200] if isinstance(failure, DeliveryFailed) else f"{type(failure).__name__} in the channel"
        if attempts >= MAX_ATTEMPTS:
            retry_at, then = None, "given up"
        else:
            wait = min(RETRY_FIRST_S * 2 ** (attempts - 1), RETRY_MAX_S)
            retry_at, then = timezone.now() + timedelta(seconds=wait), f"retrying in {wait} s"
        log.warning(
            "approval channel %s: %s notice of action request %s not sent (%s), attempt %d; %s",
            channel.name,
            delivery.kind,
            request.pk,
            why,
            attempts,
            then,
        )
        _record_outcome(delivery, state=State.FAILED, attempts=attempts, last_error=why, next_attempt_at=retry_at)
        return False
    _finish(delivery, State.SENT, attempts, "", sent_at=timezone.now())
    return True


def _finish(delivery: ChannelDelivery, state: str, attempts: int, note: str, *, sent_at=None) -> None:
    _record_outcome(
        delivery, state=state, attempts=attempts, last_error=note[:300], next_attempt_at=None, sent_at=sent_at
    )


def _record_outcome(delivery: ChannelDelivery, **outcome) -> None:
    """Record an attempt's outcome if the row is still claimed by it: `next_attempt_at` is still the lease
    `_claim` set (each claim sets a later one). Else its lease ended and another attempt owns the row."""
    claimed = Q(pk=delivery.pk, state__in=(State.PENDING, State.FAILED), next_attempt_at=delivery.next_attempt_at)
    if not Delivery.objects.filter(claimed).update(**outcome):
        log.warning(
            "approval channel %s: %s notice of action request %s: the attempt outlived its claim; "
            "its outcome (%s) is not recorded",
            delivery.channel,
            delivery.kind,
            delivery.request_id,
            outcome["state"],
        )
