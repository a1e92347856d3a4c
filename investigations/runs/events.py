"""The one place investigation events are written: saved in order, then published live.

Each event gets the next `seq` of its investigation inside the transaction that saves it, so
the saved transcript has no gaps or duplicates, and a page that loads the backlog and then
listens live can drop what it has already shown. Publishing happens after the commit: what a
viewer receives is always in the database already.

A worker passes its lease token as `owner`: a worker that lost its lease (it stalled and
another took over) cannot add to the transcript.
"""

import logging

from django.db import connection, transaction
from django.utils import timezone

from core import live
from investigations import live_messages
from investigations.models import Event, Investigation
from investigations.runs import selectors

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This worker no longer runs the investigation: another one took it over."""


def record_event(
    investigation_id: int, kind: str, data: dict, *, owner: str | None = None, published: bool = True
) -> Event:
    """Save the event; publish it after the commit, unless `published` is False: then the caller publishes
    it, with the events saved after it in the same transaction (finish: publish(verdict, status))."""
    event = Event(investigation_id=investigation_id, kind=kind, data=data, created_at=timezone.now())
    if connection.vendor == "postgresql":
        event.pk, event.seq = _insert_numbered(event, owner)
    else:
        with transaction.atomic():
            event.seq = _next_seq(investigation_id, owner)
            event.save(force_insert=True)
    # After the outermost commit: an event recorded inside a caller's transaction (finish,
    # suspend) is not visible to a viewer before it is visible in the database.
    if published:
        transaction.on_commit(lambda: publish(event))
    return event


# An event is the hottest write of a worker with hundreds of investigations in flight, and numbering
# it takes UPDATE ... RETURNING, which the ORM cannot say: so it is said here, in SQL. On PostgreSQL the
# number is taken and the event saved in one statement (one round trip, no transaction to open).
_BUMP = "UPDATE investigations_investigation SET last_seq = last_seq + 1 WHERE id = %s"
_FENCED = " AND lease_owner = %s"
_INSERT_BUMPED = (
    "INSERT INTO investigations_event (investigation_id, seq, kind, data, created_at) "
    "SELECT id, last_seq, %s, %s, %s FROM bumped RETURNING id, seq"
)


def _insert_numbered(event: Event, owner: str | None) -> tuple[int, int]:
    bump = _BUMP + (_FENCED if owner is not None else "") + " RETURNING id, last_seq"
    data = Event._meta.get_field("data").get_db_prep_save(event.data, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH bumped AS ({bump}) {_INSERT_BUMPED}",
            [event.investigation_id, *([owner] if owner is not None else []), event.kind, data, event.created_at],
        )
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(event.investigation_id)
    return row


def _next_seq(investigation_id: int, owner: str | None) -> int:
    with connection.cursor() as cursor:
        if owner is None:
            cursor.execute(_BUMP + " RETURNING last_seq", [investigation_id])
        else:
            cursor.execute(_BUMP + _FENCED + " RETURNING last_seq", [investigation_id, owner])
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(investigation_id)
    return row[0]


def publish(*events: Event) -> None:
    """Send saved events of one investigation, in order, to its viewers; a status change also to the list
    pages of those who may see it, chosen here (live_messages: everyone who sees all, and each user with a
    grant on this investigation), read once for the events sent together (a verdict and its status)."""
    investigation_id = events[0].investigation_id
    messages, listed = [], None
    try:
        for event in events:
            messages.append(
                (live_messages.investigation_group(investigation_id), live_messages.layer_event(event.as_message()))
            )
            if event.kind in (Event.Kind.STATUS, Event.Kind.VERDICT):
                if listed is None:
                    entry = list_entry(investigation_id)
                    listed = [(live_messages.LIST_ALL, live_messages.layer_status(entry, "all"))]
                    listed += [
                        (live_messages.list_user_group(user_id), live_messages.layer_status(entry, "user"))
                        for user_id in selectors.granted_viewer_ids(investigation_id)
                    ]
                messages += listed
        live.group_send(*messages)
    except Exception:  # the events are saved; a viewer that missed them reads them from the backlog
        seqs = ", ".join(str(event.seq) for event in events)
        log.warning("could not publish events %s of investigation %s", seqs, investigation_id, exc_info=True)


def list_entry(investigation_id: int) -> dict:
    """What the list page shows of an investigation, live."""
    # Only the fields shown: the row's conversation is tens of kilobytes of JSON, decoded for nothing.
    investigation = Investigation.objects.only("status", "verdict").get(pk=investigation_id)
    return {
        "id": investigation.pk,
        "status": investigation.status,
        "status_label": investigation.get_status_display(),
        "verdict": investigation.verdict,
    }
