"""The HTTP API: one django-ninja instance for every endpoint, its schema at /api/openapi.json."""

import re
from functools import wraps

from ninja import NinjaAPI
from ninja.errors import ValidationError
from ninja.parser import Parser
from pydantic import BaseModel

from console.manage.api import router as manage_router
from core.inputs import UNSTORABLE_SAID, unstorable_in
from core.problems import TokenRejected
from investigations.api_auth import Refused
from investigations.approvals.api import router as actions_router
from investigations.audit.api import router as audit_router
from investigations.intake.api import router as alerts_router
from investigations.intake.services import Throttled
from investigations.runs.api import router as investigations_router


class OneValuePerField(Parser):
    """A query field given twice is refused (400 naming it) rather than read as its last value: the
    schema gives each one value, and a filter (an audit export's `actor`, say) must mean one thing.
    Parsed after authentication, like every other input (architecture rule 12)."""

    def parse_querydict(self, data, list_fields, request):
        for key in data:
            if key not in list_fields and len(data.getlist(key)) > 1:
                raise ValidationError([{"loc": ("query", key), "msg": "given more than once: send one value"}])
        return super().parse_querydict(data, list_fields, request)


api = NinjaAPI(
    title="Gatehouse API",
    parser=OneValuePerField(),
    version="1",
    urls_namespace="api",
    docs_url=None,  # the interactive docs load scripts from a CDN; the schema is enough
)

# The `detail` of a 400, per operation (its url_name); any other operation says "Invalid request.".
INVALID_INPUT = {
    "receive_alert": "Invalid alert.",
    "receive_formatted_alert": "Invalid alert.",
    "receive_splunk_alert": "Invalid alert.",
    "list_actions": "Invalid filter.",
    "approve_action": "Invalid decision.",
    "reject_action": "Invalid decision.",
    "list_investigations": "Invalid filter.",
    "list_audit": "Invalid filter.",
    "export_audit": "Invalid filter.",
    "register_server": "Invalid server.",
    "set_credential": "Invalid credential.",
    "update_tool": "Invalid tool setting.",
}
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def _field(loc) -> str | None:
    """Where an error is, as a dotted path inside its source: ("body", "alert", "severity") -> "severity".

    ninja puts the source first and, for a body, the view's parameter name. A key the client
    made up (an unknown field) is attacker text: it is named only when it is a plain identifier.
    """
    source, *path = loc or ("",)
    if source == "body":
        path = path[1:]
    parts = [str(part) if isinstance(part, int) or PLAIN_NAME.match(str(part)) else "?" for part in path]
    return ".".join(parts) or None


@api.exception_handler(ValidationError)
def invalid_input(request, exc: ValidationError):
    """400 rather than ninja's 422, with only where and what: never the submitted value (pydantic's `input`)."""
    operation = request.resolver_match.url_name if request.resolver_match else ""
    errors = [
        {"field": _field(error.get("loc")), "message": error.get("msg", "Invalid value.")} for error in exc.errors
    ]
    detail = INVALID_INPUT.get(operation, "Invalid request.")
    return api.create_response(request, {"detail": detail, "errors": errors}, status=400)


def refuse_unstorable(view):
    """400 for a NUL character or a lone surrogate anywhere in what an operation was given (path, query or
    body), on either database: PostgreSQL cannot store or even compare one. After authentication and
    validation, before the operation reads or writes anything."""

    @wraps(view)
    def checked(request, **values):
        for name, value in values.items():
            inside = value.model_dump() if isinstance(value, BaseModel) else value
            where = unstorable_in(inside, () if isinstance(value, BaseModel) else (name,))
            if where is not None:
                raise ValidationError([{"loc": ("input", *where), "msg": UNSTORABLE_SAID}])
        return view(request, **values)

    return checked


api.add_decorator(refuse_unstorable, mode="operation")


@api.exception_handler(Refused)
def refused(request, exc: Refused):
    return api.create_response(request, {"detail": exc.detail}, status=exc.status)


@api.exception_handler(TokenRejected)
def token_rejected(request, exc: TokenRejected):
    response = api.create_response(request, {"detail": exc.message}, status=401)
    response["WWW-Authenticate"] = exc.challenge
    return response


@api.exception_handler(Throttled)
def throttled(request, exc: Throttled):
    response = api.create_response(request, {"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


api.add_router("", alerts_router)
api.add_router("", actions_router)
api.add_router("", investigations_router)
api.add_router("", audit_router)
api.add_router("", manage_router)
