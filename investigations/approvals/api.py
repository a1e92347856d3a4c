"""The approval queue over HTTP: list and read action requests, approve or reject one, confirm the outcome
of one whose outcome is unknown (architecture rule 9).

A person authenticates with the console's session (a POST also carries the CSRF token) or with
their own API token (`Authorization: Bearer ghu_...`, from `manage.py api_tokens create`), which
acts with that person's permissions, looked up afresh on every request; a token decides only if it was
made to (`--decide`), else it only reads. Everything here is limited
to the investigations the person may view: any other request is answered 404, as an unknown one is.
Whether they may decide is not settled here: investigations.approvals.services checks `approve_tool` again
inside the decision's own transaction, so a permission revoked a moment ago already counts.
"""

from typing import Annotated

from django.db.models import Prefetch
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict, StrictBool, StringConstraints

from core.problems import InvalidInput, Problem
from investigations import presence
from investigations.api_auth import AUTH, auth_for
from investigations.approvals import services
from investigations.live_messages import ActionSummary, StateName
from investigations.models import ActionApproval, ActionRequest

router = Router(tags=["actions"])

REASON_MAX = 1000


# -- schemas (a request's summary is live_messages.ActionSummary: the sockets send the same) -------------
class ActionItem(ActionSummary):
    may_approve: bool = Field(description="Whether you may approve or reject this tool's requests now.")


class ActionPage(Schema):
    items: list[ActionItem]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")


class TransitionOut(Schema):
    from_state: str = Field(description="Empty for the request's creation.")
    to_state: StateName
    actor: str = Field(description="`agent`, `system` or `user:<username>`.")
    reason: str
    at: str = Field(json_schema_extra={"format": "date-time"})


class ApprovalOut(Schema):
    username: str
    reason: str
    at: str = Field(json_schema_extra={"format": "date-time"})
    proof_factor: str = Field(
        "", description="How the approver proved presence (step-up): totp, recovery_code, api_token:<prefix>."
    )
    proof_at: str | None = Field(None, json_schema_extra={"format": "date-time"})


class ActionDetail(ActionItem):
    transitions: list[TransitionOut] = Field(description="Every change of state, oldest first.")
    approved_by: list[ApprovalOut] = Field(description="Who approved, oldest first (`approvals` counts them).")


class NotPendingProblem(Schema):
    detail: str
    state: StateName = Field(description="The request's state now: what happened to it instead.")
    request: ActionSummary


class ApproveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=REASON_MAX)] = Field(
        default="", description="Optional; recorded with your approval."
    )


class RejectIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX)] = Field(
        description="Required: the agent is told it, and it is kept in the audit trail."
    )


class ConfirmIn(Schema):
    model_config = ConfigDict(extra="forbid")

    happened: StrictBool = Field(
        description="true: you checked the backend and the action took effect; "
        "false: it did not (the agent may ask for it again)."
    )
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX)] = Field(
        description="Required: what you checked. The agent is told it, and it is kept in the audit trail."
    )


class ListFilter(Schema):
    status: StateName | None = Field(default=None, description="Only requests in this state, e.g. `pending`.")
    investigation: int | None = Field(default=None, ge=1, description="Only the requests of this investigation.")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: int | None = Field(default=None, ge=1, description="The `next_cursor` of the previous page.")


# -- helpers --------------------------------------------------------------------------------------
def _visible(user, request_id: int) -> ActionRequest | None:
    """The request, if it exists and `user` may view its investigation; None is answered 404 either way."""
    return ActionRequest.objects.visible_to(user).select_related("investigation").filter(pk=request_id).first()


def _not_found() -> Status:
    return Status(404, Problem(detail="No such action request."))


def _when(moment) -> str:
    return moment.isoformat()


def _decide(user, request_id: int, decide) -> Status:
    """Run one decision of the service and answer with its outcome (may_decide has judged the person)."""
    try:
        request = decide()
    except services.NotAllowed as refused:
        return Status(403, Problem(detail=str(refused)))
    except services.NotPending as refused:
        current = refused.request
        return Status(
            409, NotPendingProblem(detail=str(refused), state=current.state, request=services.summary(current))
        )
    except services.NotFound:
        return _not_found()
    except services.DecisionRefused as refused:
        return Status(409, Problem(detail=str(refused)))
    return Status(200, services.summary(request))


# -- endpoints ------------------------------------------------------------------------------------
@router.get(
    "/actions",
    auth=AUTH,
    response={200: ActionPage, 400: InvalidInput, 401: Problem},
    url_name="list_actions",
    operation_id="list_actions",
    summary="List action requests",
)
def list_actions(request, filters: Query[ListFilter]):
    """The action requests of the investigations you may view, newest first; `status=pending` is
    the approval queue. Each says whether you may decide it (`may_approve`). Pages hold `limit`
    requests; pass `next_cursor` back as `cursor` for the next one."""
    user = request.auth
    requests = (
        ActionRequest.objects.visible_to(user)
        .prefetch_related(  # summary() counts them: one query for the page
            Prefetch("approvals", queryset=ActionApproval.objects.only("pk", "request_id"))
        )
        .order_by("-id")
    )  # ids follow creation: newest first, and a stable cursor
    if filters.status:
        requests = requests.filter(state=filters.status)
    if filters.investigation:
        requests = requests.filter(investigation_id=filters.investigation)
    if filters.cursor:
        requests = requests.filter(pk__lt=filters.cursor)
    page = list(requests[: filters.limit + 1])
    more, page = len(page) > filters.limit, page[: filters.limit]
    allowed: dict[str, bool] = {}  # one permission check per tool, not per row
    items = []
    for action in page:
        if action.tool not in allowed:
            allowed[action.tool] = services.may_approve(user, action.tool)
        items.append(services.summary(action) | {"may_approve": allowed[action.tool]})
    return {"items": items, "next_cursor": page[-1].pk if more else None}


@router.get(
    "/actions/{id}",
    auth=AUTH,
    response={200: ActionDetail, 400: InvalidInput, 401: Problem, 404: Problem},
    url_name="action_detail",
    operation_id="action_detail",
    summary="Read an action request",
)
def action_detail(request, id: int):
    """One request with every transition and approval. 404 when it does not exist or you may not
    view its investigation."""
    user = request.auth
    action = _visible(user, id)
    if action is None:
        return _not_found()
    transitions = [
        {"from_state": t.from_state, "to_state": t.to_state, "actor": t.actor, "reason": t.reason, "at": _when(t.at)}
        for t in action.transitions.order_by("at", "id")
    ]
    approved_by = [
        {
            "username": a.user.get_username(),
            "reason": a.reason,
            "at": _when(a.created_at),
            "proof_factor": a.proof_factor,
            "proof_at": _when(a.proof_at) if a.proof_at else None,
        }
        for a in action.approvals.select_related("user").order_by("created_at", "id")
    ]
    return services.summary(action) | {
        "may_approve": services.may_approve(user, action.tool),
        "transitions": transitions,
        "approved_by": approved_by,
    }


def may_decide(request, user):
    """A decision's rule: 404 unless the request is theirs to see, 403 unless they may approve its tool.
    (investigations.approvals.services checks again inside the decision's own transaction.)"""
    try:
        action = _visible(user, int(request.resolver_match.kwargs["id"]))
    except (KeyError, ValueError):
        action = None
    if action is None:
        return 404, "No such action request."
    if not services.may_approve(user, action.tool):
        return 403, f"You are not allowed to approve {action.tool}."
    api_token = getattr(request, "api_token", None)
    if api_token is not None and not api_token.decide:  # a scope, whether or not step-up is on
        return (
            403,
            "This token only reads: a decision needs a token made to decide (manage.py api_tokens create USERNAME --name NAME --decide).",
        )
    return None


DECIDE = auth_for(may_decide)
DECISION_RESPONSES = {
    200: ActionSummary,
    400: InvalidInput,
    401: Problem,
    403: Problem,
    404: Problem,
    409: NotPendingProblem | Problem,
}


@router.post(
    "/actions/{id}/approve",
    auth=DECIDE,
    response=DECISION_RESPONSES,
    url_name="approve_action",
    operation_id="approve_action",
    summary="Approve an action request",
)
def approve_action(request, id: int, decision: ApproveIn = None):
    """Give your approval (optionally with a reason). The last approval needed approves the request
    and a worker fires it, once. 403 if you may not approve this tool; 409 if it is no longer
    pending (`state` says what it is now) or you approved it already (four-eyes needs another person)."""
    reason = decision.reason if decision is not None else ""
    proof = presence.of_request(request)
    return _decide(request.auth, id, lambda: services.approve(id, request.auth, reason, proof=proof))


@router.post(
    "/actions/{id}/reject",
    auth=DECIDE,
    response=DECISION_RESPONSES,
    url_name="reject_action",
    operation_id="reject_action",
    summary="Reject an action request",
)
def reject_action(request, id: int, decision: RejectIn):
    """Reject it with a reason (required, at most 1000 characters): nothing reaches the backend, and
    the agent is told your reason. 403 if you may not decide this tool; 409 if it is no longer pending."""
    proof = presence.of_request(request)
    return _decide(request.auth, id, lambda: services.reject(id, request.auth, decision.reason, proof=proof))


@router.post(
    "/actions/{id}/confirm",
    auth=DECIDE,
    response=DECISION_RESPONSES,
    url_name="confirm_action",
    operation_id="confirm_action",
    summary="Confirm the outcome of an action request whose outcome is unknown",
)
def confirm_action(request, id: int, decision: ConfirmIn):
    """For a request in state `unconfirmed` (it was sent, its answer was lost, and the backend cannot
    say whether it took effect): say whether it happened, and what you checked. `happened: true` ends it
    `succeeded` (a repeat of the action for the alert gets this result); `false` ends it `failed` and the
    agent may ask for the action again, which needs an approval again. Either way the investigation
    resumes with your answer. 403 if you may not approve this tool; 409 if it is not `unconfirmed`."""
    user = request.auth
    proof = presence.of_request(request)
    return _decide(
        user, id, lambda: services.confirm_outcome(id, user, decision.happened, decision.reason, proof=proof)
    )
