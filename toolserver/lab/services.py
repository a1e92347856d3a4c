"""Writes to the lab: isolate and release hosts, disable and enable accounts, open tickets and comment.

Each write runs in one transaction that first locks its target row, then looks up its
Idempotency-Key, then acts and records a LabWrite. The lock makes concurrent writes to one
target take turns, so of fifty identical requests exactly one performs the change: the others
find either the host already isolated ("already") or their key already answered ("replayed").
A unique index on answered (backend, key) pairs backs this up. Refusals (bad key, fault, bad
request, unknown target) are recorded by the API views with record().
"""

from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import IntegrityError, transaction
from django.urls import reverse

from toolserver.lab.errors import IdempotencyConflict, NotFound
from toolserver.lab.models import Account, Host, LabFault, LabWrite, Ticket, TicketComment
from toolserver.lab.selectors import find_account, find_host

ANSWERED = (LabWrite.Outcome.PERFORMED, LabWrite.Outcome.ALREADY)


@dataclass(frozen=True)
class WriteRequest:
    """One write as received: what, on what, by which key, under which Idempotency-Key."""

    backend: str
    action: str
    target: str
    key_name: str
    idempotency_key: str  # what the lab deduplicates on: blank when it acts as a backend that does not
    payload: object
    received_at: datetime
    sent_key: str = ""  # the Idempotency-Key as sent, which what the write creates carries (a ticket) either way


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


def record(write: WriteRequest, status: int, body, outcome: str) -> LabWrite:
    return LabWrite.objects.create(
        backend=write.backend,
        action=write.action,
        target=write.target[:200],
        key_name=write.key_name,
        idempotency_key=write.idempotency_key,
        payload=write.payload,
        status=status,
        response=body,
        outcome=outcome,
        received_at=write.received_at,
    )


# edr ----------------------------------------------------------------------------------
def isolate_host(write: WriteRequest) -> Answer:
    return _once(write, _lock_host, lambda host, write: _set_isolation(host, write, isolated=True))


def release_host(write: WriteRequest) -> Answer:
    return _once(write, _lock_host, lambda host, write: _set_isolation(host, write, isolated=False))


def _lock_host(ref: str) -> tuple[Host, str]:
    host = Host.objects.select_for_update().get(pk=find_host(ref).pk)
    return host, host.host_id


def _set_isolation(host: Host, write: WriteRequest, *, isolated: bool) -> tuple[int, dict, str]:
    unchanged = host.isolated == isolated
    if not unchanged:
        host.isolated = isolated
        host.save(update_fields=["isolated"])
    body = {
        "host_id": host.host_id,
        "isolated": isolated,
        ("already_isolated" if isolated else "already_released"): unchanged,
    }
    return 200, body, LabWrite.Outcome.ALREADY if unchanged else LabWrite.Outcome.PERFORMED


# identity -----------------------------------------------------------------------------
def disable_account(write: WriteRequest) -> Answer:
    return _once(write, _lock_account, lambda account, write: _set_disabled(account, disabled=True))


def enable_account(write: WriteRequest) -> Answer:
    return _once(write, _lock_account, lambda account, write: _set_disabled(account, disabled=False))


def _lock_account(username: str) -> tuple[Account, str]:
    account = Account.objects.select_for_update().get(pk=find_account(username).pk)
    return account, account.username


def _set_disabled(account: Account, *, disabled: bool) -> tuple[int, dict, str]:
    unchanged = account.disabled == disabled
    if not unchanged:
        account.disabled = disabled
        account.save(update_fields=["disabled"])
    body = {"username": account.username, "disabled": disabled, "already": unchanged}
    return 200, body, LabWrite.Outcome.ALREADY if unchanged else LabWrite.Outcome.PERFORMED


# ticketing ----------------------------------------------------------------------------
def open_ticket(write: WriteRequest, *, title: str, body: str, severity: str) -> Answer:
    def create(_lock, write):
        last = Ticket.objects.order_by("-number").values_list("number", flat=True).first()
        ticket = Ticket.objects.create(
            number=(last or Ticket.FIRST_NUMBER - 1) + 1,
            title=title,
            body=body,
            severity=severity,
            alert_ref=write.target,
            created_by=write.key_name,
            idempotency_key=write.sent_key,
        )
        return (
            201,
            {"ticket_id": str(ticket.number), "url": reverse("lab:ticket", args=[ticket.number])},
            LabWrite.Outcome.PERFORMED,
        )

    return _once(write, _lock_ticket_numbers, create)


def _lock_ticket_numbers(alert_ref: str) -> tuple[LabFault, str]:
    # A ticket has no row to lock before it exists: the ticketing backend's own row makes
    # ticket creations take turns, so numbers are handed out once each.
    return LabFault.objects.select_for_update().get_or_create(backend="ticketing")[0], alert_ref


def add_comment(write: WriteRequest, *, body: str) -> Answer:
    def comment(ticket, write):
        created = TicketComment.objects.create(
            ticket=ticket, body=body, created_by=write.key_name, idempotency_key=write.sent_key
        )
        return 201, {"ticket_id": str(ticket.number), "comment_id": str(created.pk)}, LabWrite.Outcome.PERFORMED

    return _once(write, _lock_ticket, comment)


def _lock_ticket(ref: str) -> tuple[Ticket, str]:
    is_number = ref.isdigit() and len(ref) <= 9
    ticket = Ticket.objects.select_for_update().filter(number=int(ref)).first() if is_number else None
    if ticket is None:
        raise NotFound(ref)
    return ticket, str(ticket.number)


# the write path -----------------------------------------------------------------------
ACTION_ID_PREFIXES = {"isolate_host": "ISO", "release_host": "REL", "disable_account": "DIS", "enable_account": "ENA"}


def _once(write: WriteRequest, lock, act) -> Answer:
    """Lock the target, answer a repeated Idempotency-Key from the log, else act and log it."""
    try:
        with transaction.atomic():
            target, name = lock(write.target)
            write = replace(write, target=name)  # the canonical name: H-1042 however it was asked
            first = _first_answer(write)
            if first is not None:
                return _replay(write, first)
            status, body, outcome = act(target, write)
            logged = record(write, status, body, outcome)
            if write.action in ACTION_ID_PREFIXES:  # action ids number the write log's rows
                body["action_id"] = f"{ACTION_ID_PREFIXES[write.action]}-{logged.pk}"
                logged.response = body
                logged.save(update_fields=["response"])
            return Answer(status, body)
    except IntegrityError:
        # Only the unique (backend, key) index can get here: another request answered this
        # key between our lookup and our insert. Its answer is ours.
        with transaction.atomic():
            first = _first_answer(write)
            if first is None:
                raise
            return _replay(write, first)


def _first_answer(write: WriteRequest) -> LabWrite | None:
    if not write.idempotency_key:
        return None
    return (
        LabWrite.objects.filter(backend=write.backend, idempotency_key=write.idempotency_key, outcome__in=ANSWERED)
        .order_by("id")
        .first()
    )


def _replay(write: WriteRequest, first: LabWrite) -> Answer:
    if (first.action, first.target) != (write.action, write.target):
        raise IdempotencyConflict(
            f"this Idempotency-Key already answered {first.action} on {first.target or 'no target'}; use a new key"
        )
    record(write, first.status, first.response, LabWrite.Outcome.REPLAYED)
    return Answer(first.status, first.response, {"Idempotent-Replayed": "true"})
