"""Administration over HTTP, for the admin role: the servers (credentials as fingerprints), registering an
external MCP server and discovering its tools, setting a credential, switching a tool and accepting an
external one. The same functions and audit records as the pages (console.manage.administration)."""

from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict, model_validator

from console.manage import administration
from core.problems import InvalidInput, Problem
from core.roles import ADMIN, has_role
from investigations import presence
from investigations.api_auth import auth_for
from investigations.models import ToolPolicy
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import ServerDidNotStart

router = Router(tags=["administration"])


def _admins(request, user):
    """Admins only; a change (not a read) needs a fresh proof of presence too: the session's recent step-up
    (investigations/presence.py) of the person the request authenticated. A token proves no admin change, not
    even a decide-scoped one (it proves a decision on a write): a chat bot's token cannot re-point a server."""
    if not has_role(user, ADMIN):
        return 403, "Only admins may manage tool servers."
    if request.method not in ("GET", "HEAD"):
        # A session's proof is its own person's: a request a token authenticated borrows none from a cookie
        # sent beside it (someone else's, maybe), and a token never proves an admin change.
        by_token = getattr(request, "api_token", None) is not None
        try:
            presence.require_fresh(None if by_token else presence.from_session(getattr(request, "session", None)))
        except presence.StepUpRequired as refused:
            return 403, str(refused)
    return None


AUTH = auth_for(_admins)  # every endpoint here: who is asking is judged before the body is read


class CredentialOut(Schema):
    shown: str = Field(
        description="`fingerprint <hex>` of a sealed secret, the reference, `revoked` or `deployment default`."
    )
    set_by: str = ""
    set_at: str | None = None


class ServerOut(Schema):
    name: str
    adapter: str
    url: str
    enabled: bool
    rate_limit_calls: int
    rate_limit_window_s: int
    credential: CredentialOut
    tools: list[str]
    pointed_at: str = Field(
        description="Where it points (adapter, URL, an external server's launch), as a digest: send it back as "
        "`seen` with a credential meant for that backend."
    )


class CredentialIn(Schema):
    """Exactly one of `secret` and `reference`, as the schema's oneOf says, and `seen`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["secret"]}, {"required": ["reference"]}]},
    )

    # None: not given. A null sent is refused (the type is str), as the schema says.
    secret: str = Field(
        None, min_length=1, max_length=4096, pattern=r"\S", description="Sealed at once; never returned."
    )
    reference: str = Field(
        None,
        min_length=1,
        max_length=500,
        pattern=r"\S",
        description="file:<server>.key or file:<server>/<name> in the credentials folder, resolved when the server starts.",
    )
    # Required: a credential is meant for one backend, and another admin may point the server elsewhere meanwhile.
    seen: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="The server's `pointed_at` as GET /manage/servers showed it: the credential is for that backend, "
        "and is refused if the server has been pointed elsewhere since.",
    )

    @model_validator(mode="after")
    def one_of_them(self):
        if (self.secret is None) == (self.reference is None):
            raise ValueError("give either secret or reference")
        return self


class PolicyOut(Schema):
    requires_approval: bool
    approvals_needed: Literal[1, 2] = Field(description="2 for four-eyes: two different people.")
    expiry_seconds: int = Field(description="A request not decided by then expires.")


class ExternalServerIn(Schema):
    """An external MCP server: a command over stdio, or a Streamable HTTP URL (its host on the deployment's list).

    Its credential is set afterwards (PUT …/credential), its tools discovered (POST …/discover)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1-32 of a-z, 0-9 and '-'; its tools are named `<name>__<tool>`.")
    transport: Literal["stdio", "http"] = "stdio"
    command: str = Field("", max_length=500, description="stdio: the program, run without a shell.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments, one per item.")
    cwd: str = Field("", max_length=500)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="stdio: the only variables it gets besides PATH (GATEHOUSE_*, LD_*, PYTHON*, NODE_OPTIONS refused).",
    )
    credential_env: str = Field("", description="stdio: the variable it reads its credential from.")
    url: str = Field("", max_length=500, description="http: its URL.")
    credential_header: str = Field("", description="http: the header its credential is sent in.")
    timeout_s: int | None = Field(None, ge=1, le=600, description="Per call, in seconds.")
    rate_limit_calls: int = Field(60, ge=1, le=2_147_483_647)  # what PostgreSQL's integer column holds
    rate_limit_window_s: int = Field(60, ge=1, le=86_400)  # a day, as on the server's page


class ToolIn(Schema):
    """What to change; a field left out stays as it is. The policy fields are for write tools only.
    `access` accepts an external tool's waiting listing, the one `seen` names, classified read or write
    (`target_args`: a write's arguments naming its target)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    access: Literal["read", "write"] | None = None
    seen: str | None = Field(
        None,
        max_length=64,
        description="With `access`: the `digest` of the waiting listing you accept (`proposed`); refused if its "
        "server has listed another since.",
    )
    target_args: list[str] | None = None
    requires_approval: bool | None = None
    approvals_needed: Literal[1, 2] | None = None
    expiry_seconds: int | None = Field(None, ge=60, le=7 * 86_400)


class ListingOut(Schema):
    """A listing waiting for an admin, as its server listed it (its hints shown, never trusted)."""

    description: str
    input_schema: dict | None
    output_schema: dict | None = None
    annotations: dict = Field(default_factory=dict)
    digest: str = Field(description="Send it back as `seen` to accept this listing (PATCH /manage/tools/{name}).")


class ToolOut(Schema):
    name: str
    server: str
    enabled: bool
    change_waiting: bool
    proposed: ListingOut | None = Field(description="The listing waiting (change_waiting); none when none waits.")
    usable: bool
    access: str = Field("", description="An external tool's classification: read, write, or empty (a write).")
    policy: PolicyOut | None = Field(description="The approval policy of a write tool; none for a read.")


def _credential(server: ToolServer) -> CredentialOut:
    credential = server.credential
    if credential is None:
        return CredentialOut(shown=server.credential_shown)
    by, at = (
        (credential.revoked_by, credential.revoked_at)
        if credential.revoked_at
        else (credential.set_by, credential.set_at)
    )
    return CredentialOut(shown=server.credential_shown, set_by=by, set_at=at.isoformat())


def _server(server: ToolServer) -> ServerOut:
    return ServerOut(
        name=server.name,
        adapter=server.adapter,
        url=server.url,
        enabled=server.enabled,
        rate_limit_calls=server.rate_limit_calls,
        rate_limit_window_s=server.rate_limit_window_s,
        credential=_credential(server),
        tools=[tool.name for tool in server.tools.all()],
        pointed_at=server.pointed_at(),
    )


def _tool(tool: Tool) -> ToolOut:
    policy = ToolPolicy.objects.filter(tool=tool.name).first()
    shown = (
        None if policy is None else PolicyOut(**{name: getattr(policy, name) for name in administration.POLICY_FIELDS})
    )
    return ToolOut(
        name=tool.name,
        server=tool.server.name,
        enabled=tool.enabled,
        change_waiting=tool.proposed is not None,
        proposed=None if tool.proposed is None else ListingOut(**tool.proposed, digest=tool.proposed_digest()),
        usable=tool.usable,
        access=tool.access or "",
        policy=shown,
    )


@router.get(
    "/manage/servers",
    auth=AUTH,
    response={200: list[ServerOut], 401: Problem, 403: Problem},
    url_name="manage_servers",
    operation_id="manage_servers",
    summary="Tool servers",
)
def list_servers(request):
    return [_server(server) for server in ToolServer.objects.select_related("credential").prefetch_related("tools")]


@router.post(
    "/manage/servers",
    auth=AUTH,
    response={201: ServerOut, 400: InvalidInput, 401: Problem, 403: Problem},
    url_name="register_server",
    operation_id="register_server",
    summary="Register an external MCP server",
)
def register_server(request, body: ExternalServerIn):
    """It starts with no tool the model may use: discover its tools, then accept each (PATCH /manage/tools/{name})."""
    try:
        server = administration.register_external_server(request.auth, body.model_dump(exclude_none=True))
    except (administration.Refused, ValidationError) as exc:
        return Status(400, InvalidInput(detail=_said(exc)))
    return Status(201, _server(server))


@router.post(
    "/manage/servers/{name}/discover",
    auth=AUTH,
    response={200: list[ToolOut], 401: Problem, 403: Problem, 404: Problem, 409: Problem},
    url_name="discover_tools",
    operation_id="discover_tools",
    summary="Discover a server's tools",
)
def discover_tools(request, name: str):
    """Its tools as it lists them now: a new or changed one waits, disabled, for an admin to accept it."""
    server = ToolServer.objects.filter(name=name).first()
    if server is None:
        return Status(404, Problem(detail=f"No tool server {name!r}."))
    try:
        administration.discover(server, by=administration.actor(request.auth))
    except ServerDidNotStart as exc:
        return Status(409, Problem(detail=f"Discovery failed: {exc}."))
    return [_tool(tool) for tool in server.tools.select_related("server").order_by("name")]


def _said(exc: Exception) -> str:
    return "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


@router.put(
    "/manage/servers/{name}/credential",
    auth=AUTH,
    response={200: CredentialOut, 400: InvalidInput, 401: Problem, 403: Problem, 404: Problem},
    url_name="set_credential",
    operation_id="set_credential",
    summary="Set or rotate a credential",
)
def set_credential(request, name: str, body: CredentialIn):
    """The server's processes restart with the new credential at once. The answer holds its fingerprint only.
    Refused (400) if the server no longer points where `seen` says."""
    server = ToolServer.objects.select_related("credential").filter(name=name).first()
    if server is None:
        return Status(404, Problem(detail=f"No tool server {name!r}."))
    try:
        administration.set_credential(
            server, request.auth, secret=body.secret or "", reference=body.reference or "", seen=body.seen
        )
    except administration.Refused as exc:
        return Status(400, InvalidInput(detail=str(exc)))
    return _credential(server)


@router.get(
    "/manage/tools/{name}",
    auth=AUTH,
    response={200: ToolOut, 401: Problem, 403: Problem, 404: Problem},
    operation_id="get_tool",
    summary="A tool, and the listing waiting for an admin",
)
def get_tool(request, name: str):
    """What PATCH changes, and the listing waiting (`proposed`) with the digest that accepts it."""
    tool = Tool.objects.select_related("server").filter(name=name).first()
    if tool is None:
        return Status(404, Problem(detail=f"No tool {name!r}."))
    return _tool(tool)


@router.patch(
    "/manage/tools/{name}",
    auth=AUTH,
    response={200: ToolOut, 400: InvalidInput, 401: Problem, 403: Problem, 404: Problem},
    url_name="update_tool",
    operation_id="update_tool",
    summary="Switch a tool, accept an external one, set its approval policy",
)
def update_tool(request, name: str, body: ToolIn):
    """Accept and classify an external tool, switch a tool, and set a write tool's approval policy: the same
    changes and audit records as its page."""
    tool = Tool.objects.select_related("server").filter(name=name).first()
    if tool is None:
        return Status(404, Problem(detail=f"No tool {name!r}."))
    if body.target_args is not None and body.access is None:
        return Status(400, InvalidInput(detail="target_args go with access: they classify a waiting listing."))
    if body.access is not None and not body.seen:
        return Status(400, InvalidInput(detail="access goes with seen: the digest of the listing you accept."))
    policy_changes = body.model_dump(include=set(administration.POLICY_FIELDS), exclude_none=True)
    try:
        # All or nothing: a refusal after the acceptance (a policy for what it accepted as a read) undoes it.
        with transaction.atomic():
            if body.access is not None:
                administration.accept_external_tool(
                    tool, request.auth, seen=body.seen, access=body.access, target_args=body.target_args or []
                )
            policy = ToolPolicy.objects.filter(tool=tool.name).first()  # an acceptance as a write makes one
            if policy_changes and policy is None:
                raise administration.Refused(f"{tool.name} reads: it has no approval policy.")
            if body.enabled is not None:
                administration.update_tool(tool, request.auth, enabled=body.enabled)
            if policy_changes:
                administration.update_policy(policy, request.auth, policy_changes)
    except administration.Refused as exc:
        return Status(400, InvalidInput(detail=str(exc)))
    return _tool(tool)
