"""The approval queue, live: who hears of a changed request, and what a socket is sent on connect.

A change is published once, after its commit, to the group of those who see every investigation
and to the user group of each user granted its investigation, each with the pending count of
that audience (one count for all who see all; one per granted user): the consumers only pick the
card's variant and check access (architecture rule 12), they query nothing per change.
"""

import logging

from core import live
from investigations import live_messages
from investigations.approvals.views import pending_count, queue
from investigations.models import ActionRequest, Investigation

log = logging.getLogger(__name__)


def publish(request_id: int) -> None:
    """Tell the queues, the decision cards and the navigation counts of a request's change, as it is now."""
    try:
        request = (
            ActionRequest.objects.select_related("investigation__alert")
            .prefetch_related("approvals", "transitions")
            .get(pk=request_id)
        )
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


def snapshot(user, approvable: frozenset[str], *, with_requests: bool) -> dict:
    """Sent when the socket opens (and so again after a reconnect): the count, and for the queue its contents
    (the decided ones oldest first, so that a page putting each on top ends with the newest on top)."""
    if not with_requests:
        return live_messages.snapshot_message(pending_count(user))
    pending, recent = queue(user)
    entries = [
        (live_messages.request_summary(request), live_messages.card(request, may_approve=request.tool in approvable))
        for request in [*reversed(recent), *pending]
    ]
    return live_messages.snapshot_message(len(pending), entries, [request.pk for request in pending])
