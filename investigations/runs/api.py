"""Investigations over HTTP, for automation: the filtered list, one investigation's state, verdict and
action requests, and a new investigation of the same alert. The same authorisation as the pages: an
investigation you may not view is 404, as an unknown one is, and is in no list."""

from django import forms
from django.core.paginator import Paginator
from django.db.models import Prefetch
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import ValidationError

from core.problems import InvalidInput, Problem
from core.roles import ANALYST, has_role
from investigations.api_auth import auth_for
from investigations.approvals.api import ActionSummary
from investigations.approvals.services import summary
from investigations.models import ActionApproval, Investigation
from investigations.runs import selectors, services
from investigations.runs.forms import InvestigationFilters
from investigations.runs.usage import estimated_cost

router = Router(tags=["investigations"])
NOT_FOUND = "No such investigation."
PAGE_SIZE = 50


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


class InvestigationRow(Schema):
    id: int
    status: str = Field(description="queued, running, waiting (for an approval), completed or failed.")
    verdict: str = Field(description="malicious, benign or inconclusive once completed; empty before.")
    summary: str = Field(description="The agent's summary: untrusted text, show it escaped.")
    end_reason: str = Field(description="Why it ended early (a budget, a failure), if it did.")
    model: str
    alert: AlertOut
    related_alerts: int = Field(description="Alerts of its grouping key that joined it after its own (a storm).")
    held: bool = Field(description="Queued but held: its integration started as many as its cap allows this minute.")
    tool_calls_used: int
    tokens_used: int = Field(description="What the token budget counts: the four kinds in `tokens` together.")
    tokens: TokensOut
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(None, json_schema_extra={"format": "date-time"})


class InvestigationOut(InvestigationRow):
    requests: list[ActionSummary] = Field(description="Its action requests, oldest first.")


class InvestigationPage(Schema):
    items: list[InvestigationRow] = Field(description="Newest first; `GET /api/investigations/{id}` for its requests.")
    count: int = Field(description="How many match, on every page.")
    next_page: int | None = Field(description="Pass as `page` for the next (older) page; null on the last page.")


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


def _row(investigation: Investigation) -> dict:
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
        "related_alerts": _related_count(investigation),
        "held": investigation.held,
        "tool_calls_used": investigation.tool_calls_used,
        "tokens_used": investigation.tokens_used,
        "tokens": _tokens(investigation),
        "created_at": investigation.created_at.isoformat(),
        "finished_at": investigation.finished_at.isoformat() if investigation.finished_at else None,
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


def _related_count(investigation: Investigation) -> int:
    """Counted by the list's query (selectors.listing annotates it), else asked: no query per row."""
    counted = getattr(investigation, "related_count", None)
    return investigation.related_alerts.count() if counted is None else counted


def _out(investigation: Investigation) -> dict:
    return _row(investigation) | {
        "requests": [summary(request) for request in investigation.action_requests.order_by("pk")]
    }


def _parameter(name: str, field: forms.Field) -> dict:
    """A filter of the form as an OpenAPI query parameter, so the schema (and its fuzzing) knows it."""
    schema: dict = {"type": "string"}
    if isinstance(field, forms.ChoiceField):
        schema["enum"] = [value for value, _ in field.choices]
    elif isinstance(field, forms.DateTimeField):
        schema["description"] = "ISO 8601, e.g. 2026-11-25T09:30:00Z; UTC when no offset is given."
    elif isinstance(field, forms.CharField) and field.max_length:
        schema["maxLength"] = field.max_length
    description = " ".join(part for part in (str(field.label or name.title()) + ".", str(field.help_text)) if part)
    return {"in": "query", "name": name, "required": False, "schema": schema, "description": description}


FILTER_PARAMETERS = [_parameter(name, field) for name, field in InvestigationFilters.base_fields.items()]


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
    "/investigations",
    auth=auth_for(),
    response={200: InvestigationPage, 400: InvalidInput, 401: Problem},
    url_name="list_investigations",
    operation_id="list_investigations",
    summary="List investigations",
    openapi_extra={"parameters": FILTER_PARAMETERS},
)
def list_investigations(request, page: int = Query(1, ge=1, le=100_000, description="From 1, newest first.")):
    """The investigations you may see, newest first, 50 a page, under the filters given (they combine):
    the list page's filters, read by the same form (investigations/runs/forms.py)."""
    form = InvestigationFilters(request.GET)
    # A filter given twice is refused, as the API's parser refuses a declared one (console/api.py).
    errors = [
        (name, "given more than once: send one value") for name in form.fields if len(request.GET.getlist(name)) > 1
    ]
    if not errors and not form.is_valid():
        errors = form.field_errors()
    if errors:
        raise ValidationError([{"loc": ("query", name), "msg": message} for name, message in errors])
    paginator = Paginator(selectors.listing(request.auth, form.cleaned_data), PAGE_SIZE)
    if page > paginator.num_pages:
        return {"items": [], "count": paginator.count, "next_page": None}
    current = paginator.page(page)
    return {
        "items": [_row(investigation) for investigation in current.object_list],
        "count": paginator.count,
        "next_page": current.next_page_number() if current.has_next() else None,
    }


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
