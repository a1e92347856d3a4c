"""The tool servers as an admin configured them (toolserver.models), over the deployment's defaults.

Read by the supervisor (how to start a server), the gateway (whether a tool may be called, at
what rate) and the agent (which tools, described how, the model is offered). A server's row
with a blank URL, or without any credential set, uses the deployment's TOOLSERVER_BACKENDS.
"""

import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from toolserver import external
from toolserver.catalog import SERVERS, ServerSpec, ToolSpec
from toolserver.catalog import find_tool as find_builtin
from toolserver.models import Tool, ToolServer


@dataclass(frozen=True)
class BackendBinding:
    """Which adapter, URL, credential and parameters a server is bound to: how its process starts."""

    adapter: str
    url: str
    credential_ref: str  # "" when the credential was revoked: the server will not start
    params: str = "{}"  # the adapter's plain parameters, a JSON object
    sealed_params: str = ""  # its secret parameters, {name: Fernet token} as JSON; "" when none
    external: str = ""  # an external server's launch (toolserver.launch.EXTERNAL_VARIABLE); "" for a built-in
    timeout_s: float = 0  # an external server's own call timeout; 0: the deployment's


def ensure_catalog() -> None:
    """Every server and tool of the catalog has its row; a new one starts from the deployment's defaults.

    Runs after every migrate (and every test flush): one transaction, two inserts at most.
    """
    limits = settings.TOOLSERVER_RATE_LIMITS
    with transaction.atomic():
        known = set(ToolServer.objects.values_list("name", flat=True))
        new_servers = []
        for spec in SERVERS.values():
            if spec.name not in known:
                calls, window_s = limits.get(spec.name, limits["default"])
                adapter = settings.TOOLSERVER_BACKENDS[spec.name]["adapter"]
                new_servers.append(
                    ToolServer(name=spec.name, adapter=adapter, rate_limit_calls=calls, rate_limit_window_s=window_s)
                )
        ToolServer.objects.bulk_create(new_servers)
        servers = dict(ToolServer.objects.values_list("name", "pk"))
        known = set(Tool.objects.values_list("name", flat=True))
        Tool.objects.bulk_create(
            [
                Tool(
                    server_id=servers[spec.name],
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema(),
                )
                for spec in SERVERS.values()
                for tool in spec.tools
                if tool.name not in known
            ]
        )


def binding_of(server: ToolServer | str) -> BackendBinding:
    """How `server` starts. Given a row loaded with its credential (tool_row's), it costs no query.

    A credential goes only where it was set for: the deployment's to the deployment's backend, an
    admin's to the adapter and URL it was set with. Pointed anywhere else, the server has none.
    The adapter's parameters come as set; the secret ones still sealed (only the launcher opens
    them), and, like the credential, only while it points where they were set for (pointing it
    elsewhere clears them too: console.manage.administration).
    """
    if isinstance(server, str):
        return binding_of(ToolServer.objects.select_related("credential").get(name=server))
    if server.kind == ToolServer.Kind.EXTERNAL:
        return _external_binding(server)
    default = settings.TOOLSERVER_BACKENDS[server.name]
    credential = server.credential
    if credential is None:
        on_default = (server.adapter, server.url) == (default["adapter"], "")
        reference = default["credential"] if on_default else ""
    elif credential.revoked_at or not credential.bound_to(server):
        reference = ""
    else:
        reference = credential.launch_reference
    sealed_params = server.bound_secret_params
    return BackendBinding(
        adapter=server.adapter,
        url=server.url or default["url"],
        credential_ref=reference,
        params=json.dumps(server.params, sort_keys=True),
        sealed_params=json.dumps(sealed_params, sort_keys=True) if sealed_params else "",
    )


def _external_binding(server: ToolServer) -> BackendBinding:
    """An external server's credential is bound the same way: to the launch it was set for."""
    credential = server.credential
    usable = credential is not None and not credential.revoked_at and credential.bound_to(server)
    launch = {field: getattr(server, field) for field in (*ToolServer.LAUNCH_FIELDS, "url")}
    return BackendBinding(
        adapter=server.adapter,
        url=server.url,
        credential_ref=credential.launch_reference if usable and credential else "",
        external=json.dumps(launch, sort_keys=True),
        timeout_s=float(server.timeout_s),
    )


def find_tool(name: str) -> tuple[ServerSpec, ToolSpec] | None:
    """A built-in tool from the catalog, or an external one as its row stands (toolserver.external)."""
    found = find_builtin(name)
    if found is not None or external.SEPARATOR not in name:
        return found
    row = tool_row(name)
    return external.spec_of(row) if row is not None and row.server.kind == ToolServer.Kind.EXTERNAL else None


def write_tool_names() -> list[str]:
    """Every write tool: the catalog's, and every external tool not accepted as a read."""
    builtin, external = write_tools_split()
    return builtin + list(external)


def write_tools_split():
    """The catalog's write tools (a list) and the external ones (a query of names, not yet run): a caller
    may filter on both in one query."""
    builtin = [tool.name for server in SERVERS.values() for tool in server.tools if tool.write]
    outside = Tool.objects.filter(server__kind=ToolServer.Kind.EXTERNAL).exclude(access=Tool.Access.READ)
    return builtin, outside.values_list("name", flat=True)


def tool_row(name: str) -> Tool | None:
    """The tool's row with its server and credential, as they are now: every gateway call asks.

    On PostgreSQL each call reads the three rows' versions (xmin: a committed change, whatever made it,
    leaves a new one) in one fixed statement, and the rows themselves only when one differs from the rows
    read last: building the ORM's three-table query was most of a read's CPU in the gateway. A row read
    from the cache is shared between threads: read it, never change it."""
    if connection.vendor != "postgresql":
        return _tool_row(name)
    with connection.cursor() as cursor:
        cursor.execute(_ROW_VERSIONS, [name])
        versions = cursor.fetchone()
    if versions is None:
        return None
    read = _rows_read.get(name)
    if read is not None and read[0] == versions:
        return read[1]
    row = _tool_row(name)  # after its versions: a change between the two is read again next time, never missed
    if row is not None:
        _rows_read[name] = (versions, row)
    return row


def _tool_row(name: str) -> Tool | None:
    # By its unique name, without the model's ordering (first() would join and sort on the server's
    # name for the one row, a third of the lookup's cost).
    try:
        return Tool.objects.select_related("server", "server__credential").get(name=name)
    except Tool.DoesNotExist:
        return None


# What tool_row reads each call: the versions of the rows its ORM query joins, by the tool's unique name.
_ROW_VERSIONS = (
    'SELECT tool.xmin::text, server.xmin::text, credential.xmin::text FROM "toolserver_tool" tool'
    ' JOIN "toolserver_toolserver" server ON server.id = tool.server_id'
    ' LEFT JOIN "toolserver_credential" credential ON credential.id = server.credential_id'
    " WHERE tool.name = %s"
)
_rows_read: dict[str, tuple[tuple, Tool]] = {}  # name -> (versions, row) as read last, by any thread


def offered_tools() -> list[dict]:
    """What the model is offered: every catalog tool, as an admin accepted its description and schema.

    A disabled tool stays on the list, so the model's call gets a typed tool_disabled answer (a
    check it could not make, not a finding) and a running investigation's prompt does not change.
    """
    # One query for both kinds, as plain values: the list is built before every model turn.
    rows = {row["name"]: row for row in Tool.objects.values("name", "description", "input_schema", "server__kind")}
    offered = []
    for server in SERVERS.values():
        for spec in server.tools:
            row = rows.get(spec.name)
            if row is not None and row["description"]:
                offered.append(
                    {"name": row["name"], "description": row["description"], "input_schema": row["input_schema"]}
                )
    accepted = sorted(  # an external tool is offered once an admin accepted it (its schema then set)
        (row for row in rows.values() if row["server__kind"] == ToolServer.Kind.EXTERNAL and row["input_schema"]),
        key=lambda row: row["name"],
    )
    for row in accepted:
        offered.append(
            {
                "name": row["name"],
                "description": row["description"],
                "input_schema": external.strict_schema(row["input_schema"]),
            }
        )
    return offered
