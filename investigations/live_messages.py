"""What the websockets send, one schema per message, and who hears of each change.

Every message a socket sends a browser is one of the models below, built by the consumer from a
channel-layer message that the publisher built here (the builders below are the only place each
is made). The websocket tests validate what they receive against these schemas.

Recipients are chosen when a change is published, not per open socket per change: a change goes
to the group of everyone who sees every investigation (`*_ALL`) and to the user group of each
active user who may view its investigation through an object permission (a team's grant). Each
layer message says which of the two it was sent to (`audience`); a consumer sends an "all"
message only if its user sees all, and a "user" message only if they do not, so a user with both
gets it once. Whether they see all is what the consumer read at its last access check, which it
makes before every send anyway (architecture rule 12, core.sockets): no query per change.

The decision card is rendered here, from the one partial (templates/investigations/_decision_card.html),
autoescaped, in the two variants that differ by who sees it: for someone who may approve the
request's tool, and for someone who may not (buttons disabled, a note). The consumer picks the
variant from the tools its user may approve, read at the same access check. The variants carry
no CSRF token and no return address: the page's script posts with the token of its own page.
"""

from typing import Annotated, Literal

from django.template.loader import render_to_string
from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from investigations.models import ActionRequest, Investigation

CARD_TEMPLATE = "investigations/_decision_card.html"

LIST_ALL = "investigations-all"  # status changes of every investigation, for the list pages of those who see all
APPROVALS_ALL = "approvals-all"  # every change of any request, for the queues of those who see all

Audience = Literal["all", "user"]


def investigation_group(investigation_id: int) -> str:
    """One investigation's transcript: its consumer checked, before joining, that its user may view it."""
    return f"investigation-{investigation_id}"


def list_user_group(user_id: int) -> str:
    return f"investigations-user-{user_id}"


def approvals_user_group(user_id: int) -> str:
    return f"approvals-user-{user_id}"


# -- the schemas: what a browser receives ------------------------------------------------------------
class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def as_json(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


class TextData(Message):
    text: str
    block: str  # "<turn>.<block>": the chunks of one block of the model's text share it


class ToolCallData(Message):
    tool_use_id: str
    call: str  # "<turn>.<position>"
    name: str
    server: str
    write: bool
    input_json: str  # the arguments as the page shows them: pretty JSON, as read (core.text.as_read_json)


class ResultHead(Message):
    """What the page reads of a result's envelope beside its JSON (Event.as_message): its data is not sent twice."""

    status: Literal["ok", "error"]
    source: str | None = None
    truncated: bool | None = None
    reason: str | None = None
    retryable: bool | None = None
    guidance: str | None = None


class ToolResultData(Message):
    tool_use_id: str
    call: str
    name: str
    result: ResultHead  # of the envelope, or of a typed error (architecture rules 4 and 5)
    result_json: str  # the whole of it as the page shows it: pretty JSON, as read (core.text.as_read_json)


class StatusData(Message):
    status: Investigation.Status
    message: str


class VerdictData(Message):
    verdict: Investigation.Verdict
    summary: str
    evidence: list[str]
    end_reason: str


# Every string of an event's data is sent as the transcript shows it (core.text; models.Event.as_message).
class _Event(Message):
    seq: int
    at: str


class TextEvent(_Event):
    kind: Literal["text"]
    data: TextData


class ToolCallEvent(_Event):
    kind: Literal["tool_call"]
    data: ToolCallData


class ToolResultEvent(_Event):
    kind: Literal["tool_result"]
    data: ToolResultData


class StatusEvent(_Event):
    kind: Literal["status"]
    data: StatusData


class VerdictEvent(_Event):
    kind: Literal["verdict"]
    data: VerdictData


class ActionEvent(_Event):
    kind: Literal["action"]
    data: "ActionSummary"  # a request of the investigation made or changed; target and outcome as shown (Event.as_message)


EVENT_SCHEMAS = (
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    StatusEvent,
    VerdictEvent,
    ActionEvent,
)  # one per Event.Kind
EventEntry = Annotated[
    TextEvent | ToolCallEvent | ToolResultEvent | StatusEvent | VerdictEvent | ActionEvent,
    PydanticField(discriminator="kind"),
]  # a saved event (models.Event.as_message), one data shape per kind


class EventMessage(Message):
    """/ws/investigations/<pk>/: an event of the transcript, backlog or live, in seq order."""

    type: Literal["event"] = "event"
    event: EventEntry


class ListEntry(Message):
    """What the list page shows of an investigation."""

    id: int
    status: Investigation.Status
    status_label: str
    verdict: str


class StatusMessage(Message):
    """/ws/investigations/: an investigation's status or verdict changed."""

    type: Literal["status"] = "status"
    investigation: ListEntry


StateName = Literal[tuple(ActionRequest.State.values)]  # pending, approved, executing, ...


class EvidenceRef(Schema):
    seq: int = Field(description="The transcript event holding the cited tool result.")
    tool_use_id: str
    tool: str


class ActionSummary(Schema):
    """A request as the pages, the API, the transcript's action events and the sockets carry it
    (built only by `request_summary`; the API's schema too)."""

    id: int
    investigation_id: int
    tool_use_id: str
    tool: str = Field(description="The write tool, e.g. `isolate_host`.")
    target: str = Field(description="What it acts on, e.g. `host=ws-fin-07`.")
    arguments: dict = Field(description="What the write is sent with, whole (a ticket's body too): what is decided.")
    state: StateName
    reason: str = Field(description="The agent's stated reason: untrusted text, show it escaped.")
    risk: list[str] = Field(description="Blast-radius notes, e.g. `host is a domain controller`.")
    evidence: list[EvidenceRef]
    approvals: int = Field(description="Approvals given so far.")
    approvals_needed: int = Field(description="2 for four-eyes: two different people.")
    expires_at: str = Field(json_schema_extra={"format": "date-time"}, description="Undecided by then, it expires.")
    outcome: str = Field(description="The result in a line once decided or executed, e.g. `WS-FIN-07 isolated`.")
    idempotency_key: str = Field(description="The write's key (action, target, alert): the backend sees it once.")


class QueueEntry(Message):
    request: ActionSummary
    card: str  # the decision card's HTML, escaped, in the variant for this user


class RequestMessage(Message):
    """/ws/approvals/: a request changed; with the user's pending count after it."""

    type: Literal["request"] = "request"
    request: ActionSummary
    card: str
    pending: int


class SnapshotMessage(Message):
    """/ws/approvals/ on connect: the user's pending count; with ?queue=1 also the queue's requests
    (the decided ones oldest first, then the pending ones) and the ids of those pending; with
    ?investigation=<id> that investigation's requests, with ?request=<id> that one (approvals/live.snapshot)."""

    type: Literal["snapshot"] = "snapshot"
    pending: int
    requests: list[QueueEntry] | None = None
    pending_ids: list[int] | None = None


# A socket whose user's access ended closes with core.sockets.ACCESS_ENDED (4403) and sends no message.


# -- building them -----------------------------------------------------------------------------------
def event_message(event: dict) -> dict:
    return EventMessage(event=event).as_json()


def status_message(entry: dict) -> dict:
    return StatusMessage(investigation=ListEntry(**entry)).as_json()


def request_summary(request: ActionRequest) -> dict:
    """The one summary of a request (approvals.services.summary)."""
    return ActionSummary(
        id=request.pk,
        investigation_id=request.investigation_id,
        tool_use_id=request.tool_use_id,
        tool=request.tool,
        target=request.target,
        arguments=request.arguments,
        state=request.state,
        reason=request.reason,
        risk=request.risk,
        evidence=request.evidence,
        approvals=request.approvals.count(),
        approvals_needed=request.approvals_needed,
        expires_at=request.expires_at.isoformat(),
        outcome=request.outcome,
        idempotency_key=request.idempotency_key,
    ).model_dump(mode="json")


def card(request: ActionRequest, *, may_approve: bool) -> str:
    """The decision card of a request (its alert, approvals and transitions read: prefetch them) for
    someone who may approve its tool or not; autoescaped like every page."""
    tools = [request.tool] if may_approve else []
    return render_to_string(
        CARD_TEMPLATE, {"action": request, "approvable_tools": tools, "return_to": "", "csrf_token": ""}
    )


def cards(request: ActionRequest) -> dict[str, str]:
    """The decision card in both variants: "approver" (may approve its tool) and "viewer"."""
    return {"approver": card(request, may_approve=True), "viewer": card(request, may_approve=False)}


def card_for(variants: dict[str, str], tool: str, approvable: frozenset[str]) -> str:
    return variants["approver" if tool in approvable else "viewer"]


def request_message(summary: dict, card: str, pending: int) -> dict:
    return RequestMessage(request=ActionSummary(**summary), card=card, pending=pending).as_json()


def snapshot_message(
    pending: int, entries: list[tuple[dict, str]] | None = None, pending_ids: list[int] | None = None
) -> dict:
    requests = None if entries is None else [QueueEntry(request=ActionSummary(**s), card=c) for s, c in entries]
    return SnapshotMessage(pending=pending, requests=requests, pending_ids=pending_ids).as_json()


# -- the channel layer's messages: from a publisher to the consumers -----------------------------------
def layer_event(event: dict) -> dict:
    return {"type": "investigation.event", "event": event}


def layer_status(entry: dict, audience: Audience) -> dict:
    return {"type": "investigation.status", "audience": audience, "investigation": entry}


def layer_request(summary: dict, variants: dict[str, str], pending: int, audience: Audience) -> dict:
    return {
        "type": "approvals.changed",
        "audience": audience,
        "request": summary,
        "cards": variants,
        "pending": pending,
    }


def meant_for(message: dict, sees_all: bool) -> bool:
    """Whether a consumer whose user sees all (or not) sends this layer message on."""
    return (message["audience"] == "all") == sees_all


ActionEvent.model_rebuild()
EventMessage.model_rebuild()
