"""The one view every inbound approval channel's callbacks reach: POST /channels/<name>/callback.

In this order, every time (architecture rule 12): the channel must be enabled (else 404); the
platform must be who it says (`authenticate`: its signature over the raw body, its timestamp; else
401, before the body is read); its user must be linked to an active Gatehouse user (`user_for`;
else 403); that person must be able to see the request (else 404, as for an unknown one). Then the
decision is taken by the same `approve`/`reject` as the pages and the API, which check the
`approve_tool` permission and the expiry again inside the decision's transaction and write the
audit record, naming the channel (architecture rule 9). No session, so no CSRF token: the
signature is the callback's proof.
"""

import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from investigations.approvals import services
from investigations.approvals.channels import base
from investigations.models import ActionRequest

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def callback(request, channel: str):
    inbound = base.inbound(channel)
    if inbound is None:
        return _answer(404, "No such approval channel.")
    try:
        identity = inbound.authenticate(request)
    except base.Refused as refused:
        log.warning("approval channel %s: callback refused (%s)", inbound.name, refused)
        return _answer(refused.status, str(refused))
    user = inbound.user_for(identity)
    if user is None:
        log.warning("approval channel %s: callback from an unlinked platform user refused", inbound.name)
        return _answer(403, "This platform user is not linked to an active Gatehouse user.")
    action = ActionRequest.objects.visible_to(user).filter(pk=identity.request_id).first()
    if action is None:
        return _answer(404, "No such action request.")
    try:
        if identity.decision == "approve":
            decided = services.approve(action.pk, user, identity.reason, channel=inbound.name)
        else:
            decided = services.reject(action.pk, user, identity.reason, channel=inbound.name)
    except services.DecisionRefused as refused:
        current = refused.request or action
        current.refresh_from_db(fields=["state"])
        return JsonResponse({"detail": str(refused), "state": current.state}, status=refused.status)
    return JsonResponse(
        {"detail": f"Your {identity.decision} decision is recorded.", "request": services.summary(decided)}
    )


def _answer(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)
