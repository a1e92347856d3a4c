"""The approval pages: the queue, one request's history, and the decisions posted from them.

The decision forms (on the queue, on a request's page and on the investigation page's decision
card) post here as plain HTML forms; the pages' script posts the same forms with
`Accept: application/json` to stay on the page, and gets the request's summary and its card,
rendered for them from the one partial, back. Who may
decide is checked again by its services at every decision, whatever the page showed.

A user sees a request only if they may view its investigation (`ActionRequest.objects.visible_to`):
anywhere else it is a 404.
"""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from investigations import live_messages, presence
from investigations.approvals import services
from investigations.models import ActionRequest, sees_any_investigation

RECENT = 20  # decided requests shown below the queue
REASON_MAX = 1000


# -- what the pages and the approvals socket (approvals/live.py) read ------------------------------
def pending_count(user) -> int:
    """The navigation's badge: what waits for a person (a decision, or a check of an unknown outcome);
    one count query (none for a signed-out user)."""
    return ActionRequest.objects.visible_to(user).filter(state__in=ActionRequest.NEEDS_A_PERSON).count()


def queue(user) -> tuple[list[ActionRequest], list[ActionRequest]]:
    """What waits for a person (pending, or unconfirmed: its outcome to check) oldest first, and the latest
    decided ones, newest decision first."""
    visible = ActionRequest.objects.visible_to(user).for_cards()
    pending = list(visible.filter(state__in=ActionRequest.NEEDS_A_PERSON).order_by("created_at", "id"))
    recent = list(
        visible.exclude(state__in=ActionRequest.NEEDS_A_PERSON)
        .annotate(decided_at=Max("transitions__at"))
        .order_by("-decided_at", "-id")[:RECENT]
    )
    return pending, recent


def _visible_or_404(user, pk: int) -> ActionRequest:
    request = (
        ActionRequest.objects.visible_to(user)
        .select_related("investigation__alert")
        .prefetch_related("approvals__user", "transitions")
        .filter(pk=pk)
        .first()
    )
    if request is None:
        raise Http404("No such action request.")
    return request


# -- pages ------------------------------------------------------------------------------------------
@login_required
def approval_queue(request):
    if not sees_any_investigation(request.user):
        raise PermissionDenied
    pending, recent = queue(request.user)
    return render(
        request, "investigations/approvals.html", {"pending": pending, "recent": recent, "recent_limit": RECENT}
    )


@login_required
def action_detail(request, pk: int):
    return _render_action(request, _visible_or_404(request.user, pk))


def _render_action(request, action: ActionRequest, *, status: int = 200):
    return render(
        request,
        "investigations/action.html",
        {
            "action": action,
            "alert": action.investigation.alert,
            "result_json": json.dumps(action.result, indent=2, ensure_ascii=False) if action.result is not None else "",
            "transitions": action.transitions.all(),
            "approvals": action.approvals.all(),
            "may_confirm": action.state == ActionRequest.State.UNCONFIRMED
            and services.may_approve(request.user, action.tool),
        },
        status=status,
    )


# -- decisions ---------------------------------------------------------------------------------------
@login_required
@require_POST
def approve(request, pk: int):
    return _decide(request, pk, "approve")


@login_required
@require_POST
def reject(request, pk: int):
    return _decide(request, pk, "reject")


@login_required
@require_POST
def confirm(request, pk: int):
    """The check of an unknown outcome: `happened` ("yes" or "no") and a reason, both required."""
    action = _visible_or_404(request.user, pk)
    reason = request.POST.get("reason", "").strip()
    happened = {"yes": True, "no": False}.get(request.POST.get("happened", ""))
    if happened is None:
        return _refused(request, action, "Say whether it happened: yes or no.", 400)
    if not reason:
        return _refused(
            request, action, "Say what you checked: the agent is told, and it is kept in the audit trail.", 400
        )
    if len(reason) > REASON_MAX:
        return _refused(request, action, f"Keep the reason under {REASON_MAX} characters.", 400)
    try:
        decided = services.confirm_outcome(
            action.pk, request.user, happened, reason, proof=presence.of_request(request)
        )
    except services.DecisionRefused as refused:
        return _refused(request, action, str(refused), refused.status)
    if happened:
        done = f"Confirmed: {decided.tool} on {decided.target_text} took effect. The agent is told."
    else:
        done = f"Confirmed: {decided.tool} on {decided.target_text} did not happen. The agent is told it may ask again."
    if _wants_json(request):
        return JsonResponse({"detail": done, **_as_shown(request, decided.pk)})
    messages.success(request, done)
    return redirect(reverse("investigations:action", args=[decided.pk]))


def _decide(request, pk: int, decision: str):
    action = _visible_or_404(request.user, pk)  # who may not see it learns nothing about it
    reason = request.POST.get("reason", "").strip()
    if len(reason) > REASON_MAX:
        return _refused(request, action, f"Keep the reason under {REASON_MAX} characters.", 400)
    if decision == "reject" and not reason:
        return _refused(request, action, "Say why you reject it: the agent is told your reason.", 400)
    try:
        if decision == "approve":
            decided = services.approve(action.pk, request.user, reason, proof=presence.of_request(request))
        else:
            decided = services.reject(action.pk, request.user, reason, proof=presence.of_request(request))
    except services.DecisionRefused as refused:
        return _refused(request, action, str(refused), refused.status)
    # As the decision left it: a worker may have moved it on already, and the sockets say so.
    if decided.state == ActionRequest.State.PENDING:
        done = f"Approval {decided.approvals.count()} of {decided.approvals_needed} recorded: another person must approve too."
    elif decision == "approve":
        done = f"Approved {decided.tool} on {decided.target_text}: a worker runs it now."
    else:
        done = f"Rejected {decided.tool} on {decided.target_text}: the agent is told your reason."
    if _wants_json(request):
        return JsonResponse({"detail": done, **_as_shown(request, decided.pk)})
    messages.success(request, done)
    return redirect(_next_url(request, decided))


def _refused(request, action: ActionRequest, detail: str, status: int):
    """A decision that was not taken: say why, and show the request as it is now."""
    current = ActionRequest.objects.get(pk=action.pk)
    if _wants_json(request):
        return JsonResponse({"detail": detail, "state": current.state, **_as_shown(request, action.pk)}, status=status)
    if status == 403:
        messages.error(request, detail)
        return _render_action(request, _visible_or_404(request.user, action.pk), status=403)
    messages.error(request, detail)  # the page it goes back to shows the request's state now
    return redirect(_next_url(request, current))


def _as_shown(request, pk: int) -> dict:
    """For the page's script: the request's summary and its decision card as the one partial renders it
    for this user, now (what the socket sends is the same card)."""
    action = _visible_or_404(request.user, pk)
    card = render_to_string(
        live_messages.CARD_TEMPLATE, {"action": action, "return_to": _next_url(request, action)}, request=request
    )
    return {"request": services.summary(action), "card": card}


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _next_url(request, action: ActionRequest) -> str:
    """Back to the page the form was on, if it is one of ours; else the request's own page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("investigations:action", args=[action.pk])
