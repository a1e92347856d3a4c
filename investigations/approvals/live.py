"""The approval queue, live: who hears of a changed request, and what a socket is sent on connect.

A change is published once, after its commit, to the group of those who see every investigation
and to the user group of each user granted its investigation, each with the pending count of
that audience (one count for all who see all; one per granted user): the consumers only pick the
card's variant and check access (architecture rule 12), they query nothing per change.
"""

import logging
from dataclasses import dataclass

from core import live
from investigations import live_messages
from investigations.approvals.views import pending_count, queue
from investigations.models import ActionRequest, Investigation

log = logging.getLogger(__name__)


def publish(request_id: int) -> None:
    """Tell the queues, the decision cards and the navigation counts of a request's change, as it is now."""
    try:
        request = ActionRequest.objects.for_cards().get(pk=request_id)
        summary, variants = live_messages.request_summary(request), live_messages.cards(request)
        everyone = ActionRequest.objects.filter(state__in=ActionRequest.NEEDS_A_PERSON).count()
        messages = [(live_messages.APPROVALS_ALL, live_messages.layer_request(summary, variants, everyone, "all"))]
        granted = Investigation.objects.grantees(request.investigation_id)  # one query: users, not ids then users
        messages += [
            (
                live_messages.approvals_user_group(user.pk),
                live_messages.layer_request(summary, variants, pending_count(user), "user"),
            )
            for user in granted
        ]
        live.group_send(*messages)
    except Exception:  # the pages show it on the next load, and a reconnecting socket's snapshot has it
        log.warning("could not publish the change of action request %s", request_id, exc_info=True)


@dataclass(frozen=True)
class Shown:
    """What the page that opened the socket shows: the queue, one investigation's requests, one request,
    or none (only the navigation's count)."""

    queue: bool = False
    investigation: int | None = None
    request: int | None = None


def snapshot(user, approvable: frozenset[str], shown: Shown) -> dict:
    """Sent when the socket opens (and so again after a reconnect): the count, and the requests the page
    shows as they are now, each only if the user may see it. The queue's come with the ids of those
    pending, the decided ones oldest first (so that a page putting each on top ends with the newest on top)."""
    if shown.queue:
        pending, recent = queue(user)
        entries = _entries([*reversed(recent), *pending], approvable)
        return live_messages.snapshot_message(len(pending), entries, [request.pk for request in pending])
    if shown.investigation is None and shown.request is None:
        return live_messages.snapshot_message(pending_count(user))
    requests = ActionRequest.objects.visible_to(user).for_cards()
    if shown.investigation is not None:
        requests = requests.filter(investigation_id=shown.investigation)
    else:
        requests = requests.filter(pk=shown.request)
    return live_messages.snapshot_message(pending_count(user), _entries(requests.order_by("pk"), approvable))


def _entries(requests, approvable: frozenset[str]) -> list[tuple[dict, str]]:
    return [
        (live_messages.request_summary(request), live_messages.card(request, may_approve=request.tool in approvable))
        for request in requests
    ]
