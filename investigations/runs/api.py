"""Investigations over HTTP, for automation: one investigation's state, verdict and action requests, and
a new investigation of the same alert. The same authorisation as the pages: an investigation you may
not view is 404, as an unknown one is."""

from django.db.models import Prefetch
from ninja import Field, Router, Schema, Status

from core.problems import InvalidInput, Problem
from core.roles import ANALYST, has_role
from investigations.api_auth import auth_for
from investigations.approvals.api import ActionSummary
from investigations.approvals.services import summary
from investigations.models import ActionApproval, Investigation
from investigations.runs import services
from investigations.runs.usage import estimated_cost

router = Router(tags=["investigations"])
NOT_FOUND = "No such investigation."


class AlertOut(Schema):
    id: int
    source: str
    external_id: str
    title: str
    severity: str


class TokensOut(Schema):
    input: int = Field(description="Input tokens after the last cache breakpoint, at the full price.")
    cache_creation: int = Field(description="Input tokens written to the prompt cache.")
    cache_read: int = Field(description="Input tokens read from the prompt cache.")
    output: int
    cache_read_share: float | None = Field(description="cache_read over all input tokens; null before any turn.")
    estimated_cost_usd: str | None = Field(description="From the price table; null when it has no price for the model.")


class InvestigationOut(Schema):
    id: int
    status: str = Field(description="queued, running, waiting (for an approval), completed or failed.")
    verdict: str = Field(description="malicious, benign or inconclusive once completed; empty before.")
    summary: str = Field(description="The agent's summary: untrusted text, show it escaped.")
    end_reason: str = Field(description="Why it ended early (a budget, a failure), if it did.")
    model: str
    alert: AlertOut
    tool_calls_used: int
    tokens_used: int = Field(description="What the token budget counts: the four kinds in `tokens` together.")
    tokens: TokensOut
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(None, json_schema_extra={"format": "date-time"})
    requests: list[ActionSummary] = Field(description="Its action requests, oldest first.")


def _visible(user, investigation_id: int) -> Investigation | None:
    return (
        Investigation.objects.visible_to(user)
        .select_related("alert")
        .prefetch_related(
            Prefetch("action_requests__approvals", queryset=ActionApproval.objects.only("pk", "request_id"))
        )
        .filter(pk=investigation_id)
        .first()
    )


def _out(investigation: Investigation) -> dict:
    alert = investigation.alert
    return {
        "id": investigation.pk,
        "status": investigation.status,
        "verdict": investigation.verdict,
        "summary": investigation.summary,
        "end_reason": investigation.end_reason,
        "model": investigation.model,
        "alert": {
            "id": alert.pk,
            "source": alert.source,
            "external_id": alert.external_id,
            "title": alert.title,
            "severity": alert.severity,
        },
        "tool_calls_used": investigation.tool_calls_used,
        "tokens_used": investigation.tokens_used,
        "tokens": _tokens(investigation),
        "created_at": investigation.created_at.isoformat(),
        "finished_at": investigation.finished_at.isoformat() if investigation.finished_at else None,
        "requests": [summary(request) for request in investigation.action_requests.order_by("pk")],
    }


def _tokens(investigation: Investigation) -> dict:
    usage = investigation.usage
    cost = estimated_cost(investigation.model, usage)
    return {
        "input": usage.input,
        "cache_creation": usage.cache_creation,
        "cache_read": usage.cache_read,
        "output": usage.output,
        "cache_read_share": usage.cache_read_share,
        "estimated_cost_usd": None if cost is None else f"{cost:.6f}",
    }


def _may_investigate(request, user):
    """Starting one is an analyst's; the investigation must be theirs to see."""
    if not has_role(user, ANALYST):
        return 403, "Only analysts start investigations."
    try:
        investigation_id = int(request.resolver_match.kwargs["id"])
    except (KeyError, ValueError):
        return 404, NOT_FOUND
    if _visible(user, investigation_id) is None:
        return 404, NOT_FOUND
    return None


@router.get(
    "/investigations/{id}",
    auth=auth_for(),
    response={200: InvestigationOut, 400: InvalidInput, 401: Problem, 404: Problem},
    url_name="investigation_detail",
    operation_id="investigation_detail",
    summary="One investigation",
)
def investigation_detail(request, id: int):
    """Its state, verdict, summary, usage and action requests."""
    investigation = _visible(request.auth, id)
    if investigation is None:
        return Status(404, Problem(detail=NOT_FOUND))
    return _out(investigation)


@router.post(
    "/investigations/{id}/again",
    auth=auth_for(_may_investigate),
    response={201: InvestigationOut, 400: InvalidInput, 401: Problem, 403: Problem, 404: Problem, 409: Problem},
    url_name="investigate_again",
    operation_id="investigate_again",
    summary="Investigate its alert again",
)
def investigate_again(request, id: int):
    """A new investigation of the same alert, queued for a worker (201). 409 while an investigation of
    that alert is still queued, running or waiting: one at a time. Writes it asks for carry the same
    alert, so an action already done for it is not done twice (the idempotency key)."""
    alert = Investigation.objects.select_related("alert").get(pk=id).alert  # visible: _may_investigate checked it
    started = services.investigate_again(alert, requested_by=request.auth)
    if started is None:
        return Status(409, Problem(detail="An investigation of this alert is still in progress."))
    return Status(201, _out(Investigation.objects.select_related("alert").get(pk=started.pk)))
