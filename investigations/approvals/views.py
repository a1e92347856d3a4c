"""The approval pages: the queue, one request's history, and the decisions posted from them.

The decision forms (on the queue, on a request's page and on the investigation page's decision
card) post here as plain HTML forms; the pages' script posts the same forms with
`Accept: application/json` to stay on the page, and gets the request's summary and its card,
rendered for them from the one partial, back. Who may
decide is checked again by `actions` at every decision, whatever the page showed.

A user sees a request only if they may view its investigation: anywhere else it is a 404.
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

from investigations import live_messages
from investigations.approvals import services as actions
from investigations.models import ActionRequest
from investigations.runs import selectors

RECENT = 20  # decided requests shown below the queue
REASON_MAX = 1000


# -- what the pages and the approvals socket (approvals/live.py) read ------------------------------
def visible_requests(user):
    """The requests of the investigations `user` may view."""
    requests = ActionRequest.objects.all()
    if selectors.sees_all_investigations(user):
        return requests
    return requests.filter(investigation__in=selectors.visible_investigations(user).values("pk"))


def pending_count(user) -> int:
    """The navigation's badge: one count query."""
    if not (user.is_authenticated and user.is_active):
        return 0
    return visible_requests(user).filter(state=ActionRequest.State.PENDING).count()


def sees_any_investigation(user) -> bool:
    return selectors.sees_all_investigations(user) or selectors.visible_investigations(user).exists()


def queue(user) -> tuple[list[ActionRequest], list[ActionRequest]]:
    """Pending requests oldest first, and the latest decided ones, newest decision first."""
    visible = visible_requests(user).select_related("investigation__alert").prefetch_related("approvals", "transitions")
    pending = list(visible.filter(state=ActionRequest.State.PENDING).order_by("created_at", "id"))
    recent = list(
        visible.exclude(state=ActionRequest.State.PENDING)
        .annotate(decided_at=Max("transitions__at"))
        .order_by("-decided_at", "-id")[:RECENT]
    )
    return pending, recent


def _visible_or_404(user, pk: int) -> ActionRequest:
    request = (
        ActionRequest.objects.select_related("investigation__alert")
        .prefetch_related("approvals__user", "transitions")
        .filter(pk=pk)
        .first()
    )
    if request is None or not selectors.can_view(user, request.investigation):
        raise Http404("No such action request.")
    return request


# -- pages ------------------------------------------------------------------------------------------
@login_required
def approval_queue(request):
    if not sees_any_investigation(request.user):
        raise PermissionDenied
    pending, recent = queue(request.user)
    return render(request, "investigations/approvals.html", {"pending": pending, "recent": recent, "recent_limit": RECENT})


@login_required
def action_detail(request, pk: int):
    return _render_action(request, _visible_or_404(request.user, pk))


def _render_action(request, action: ActionRequest, *, status: int = 200):
    return render(request, "investigations/action.html", {
        "action": action,
        "alert": action.investigation.alert,
        "arguments_json": json.dumps(action.arguments, indent=2, ensure_ascii=False),  # shown autoescaped
        "result_json": json.dumps(action.result, indent=2, ensure_ascii=False) if action.result is not None else "",
        "transitions": action.transitions.all(),
        "approvals": action.approvals.all(),
    }, status=status)


# -- decisions ---------------------------------------------------------------------------------------
@login_required
@require_POST
def approve(request, pk: int):
    return _decide(request, pk, "approve")


@login_required
@require_POST
def reject(request, pk: int):
    return _decide(request, pk, "reject")


def _decide(request, pk: int, decision: str):
    action = _visible_or_404(request.user, pk)  # who may not see it learns nothing about it
    reason = request.POST.get("reason", "").strip()
    if len(reason) > REASON_MAX:
        return _refused(request, action, f"Keep the reason under {REASON_MAX} characters.", 400)
    if decision == "reject" and not reason:
        return _refused(request, action, "Say why you reject it: the agent is told your reason.", 400)
    try:
        if decision == "approve":
            decided = actions.approve(action.pk, request.user, reason)
        else:
            decided = actions.reject(action.pk, request.user, reason)
    except actions.DecisionRefused as refused:
        return _refused(request, action, str(refused), refused.status)
    # As the decision left it: a worker may have moved it on already, and the sockets say so.
    if decided.state == ActionRequest.State.PENDING:
        done = f"Approval {decided.approvals.count()} of {decided.approvals_needed} recorded: another person must approve too."
    elif decision == "approve":
        done = f"Approved {decided.tool} on {decided.target}: a worker runs it now."
    else:
        done = f"Rejected {decided.tool} on {decided.target}: the agent is told your reason."
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
    card = render_to_string(live_messages.CARD_TEMPLATE, {"action": action, "return_to": _next_url(request, action)}, request=request)
    return {"request": actions.summary(action), "card": card}


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _next_url(request, action: ActionRequest) -> str:
    """Back to the page the form was on, if it is one of ours; else the request's own page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("investigations:action", args=[action.pk])
