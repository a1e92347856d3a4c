"""Registering an external MCP server and accepting its tools over the API (console/manage/api.py): the
same administration functions and audit records as the pages, for admins only.

server-memory over stdio is registered, discovered and its tools accepted as a read and as a write;
the model is then offered them, and the gateway calls the read.
"""

import json

import pytest
from django.test import Client

from console.manage import administration
from core.roles import ANALYST
from investigations.models import AuditRecord, ToolPolicy
from investigations.tokens import create_api_token
from tests.console.test_external_server_pages import LISTED, SWAPPED, lookups_listing
from tests.toolserver.test_external_servers import MEMORY_JS
from toolserver import config
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)
CANARY = "api-memory-canary-8d1f0b"


def call(user, method: str, path: str, body=None):
    token = create_api_token(user, "tests")[1]
    data = "" if body is None else json.dumps(body)
    return Client().generic(
        method, f"/api{path}", data, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def registration(tmp_path):
    yield {
        "name": "memory",
        "command": "node",
        "args": [str(MEMORY_JS)],
        "env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
        "credential_env": "MEMORY_TOKEN",
    }
    get_supervisor().restart("memory")


def test_an_admin_registers_discovers_and_accepts_an_external_server_over_the_api(admin_user, registration):
    registered = call(admin_user, "POST", "/manage/servers", registration)
    assert registered.status_code == 201, registered.content
    credential = {"secret": CANARY, "seen": registered.json()["pointed_at"]}  # meant for the server registered
    assert (registered.json()["name"], registered.json()["adapter"], registered.json()["tools"]) == (
        "memory",
        "mcp-stdio",
        [],
    )
    server = ToolServer.objects.get(name="memory")
    assert (server.kind, server.command, server.args, server.credential_env) == (
        "external",
        "node",
        [str(MEMORY_JS)],
        "MEMORY_TOKEN",
    )
    record = AuditRecord.objects.get(outcome="server_registered", tool="")
    assert admin_user.username in record.actor
    assert call(admin_user, "POST", "/manage/servers", registration).status_code == 400  # the name is taken

    unset = call(admin_user, "POST", "/manage/servers/memory/discover")  # its credential is not set yet
    assert unset.status_code == 409 and "did not start" in unset.json()["detail"]
    assert call(admin_user, "PUT", "/manage/servers/memory/credential", credential).status_code == 200
    discovered = call(admin_user, "POST", "/manage/servers/memory/discover")
    assert discovered.status_code == 200, discovered.content
    waiting = {tool["name"]: tool for tool in discovered.json()}
    assert {"memory__read_graph", "memory__create_entities"} <= set(waiting)
    assert not waiting["memory__read_graph"]["usable"] and waiting["memory__read_graph"]["change_waiting"]
    assert "memory__read_graph" not in {tool["name"] for tool in config.offered_tools()}

    assert waiting["memory__read_graph"]["proposed"]["annotations"]["readOnlyHint"] is True  # shown, not trusted

    seen = {name: tool["proposed"]["digest"] for name, tool in waiting.items()}  # what the admin was shown
    read = call(
        admin_user, "PATCH", "/manage/tools/memory__read_graph", {"access": "read", "seen": seen["memory__read_graph"]}
    )
    assert read.status_code == 200, read.content
    assert (read.json()["access"], read.json()["usable"], read.json()["policy"]) == ("read", True, None)
    write = call(
        admin_user,
        "PATCH",
        "/manage/tools/memory__create_entities",
        {"access": "write", "target_args": ["entities"], "seen": seen["memory__create_entities"]},
    )
    assert write.status_code == 200, write.content
    assert write.json()["access"] == "write" and write.json()["policy"]["requires_approval"] is True
    assert Tool.objects.get(name="memory__create_entities").target_args == ["entities"]
    assert ToolPolicy.objects.filter(tool="memory__create_entities").exists()
    accepted = AuditRecord.objects.filter(outcome="tool_accepted").values_list("tool", "extra__after__access")
    assert set(accepted) == {("memory__read_graph", "read"), ("memory__create_entities", "write")}
    assert {"memory__read_graph", "memory__create_entities"} <= {tool["name"] for tool in config.offered_tools()}
    context = CallContext(correlation_id="inv-api-ext", trigger="alert-api-ext")
    assert Gateway().call("memory__read_graph", {}, context)["status"] == "ok"

    # Nothing waits now; a target that is not an argument; a built-in is not accepted this way.
    again = call(
        admin_user, "PATCH", "/manage/tools/memory__read_graph", {"access": "read", "seen": seen["memory__read_graph"]}
    )
    assert again.status_code == 400 and "no listing waiting" in again.json()["detail"]
    assert call(admin_user, "PATCH", "/manage/tools/get_host", {"access": "read"}).status_code == 400
    assert call(admin_user, "PATCH", "/manage/tools/memory__read_graph", {"target_args": ["x"]}).status_code == 400


def test_the_api_accepts_the_listing_whose_digest_it_sends_and_no_other(admin_user, monkeypatch):
    """The listing waiting comes with its digest; accepting sends it back, and a listing a discovery has put
    in its place since is refused: nothing accepted, nothing recorded."""
    listing = lookups_listing(admin_user, monkeypatch)
    shown = call(admin_user, "GET", "/manage/tools/lookups__lookup")
    assert shown.status_code == 200, shown.content
    proposed = shown.json()["proposed"]
    assert (proposed["description"], proposed["input_schema"]) == (LISTED["description"], LISTED["input_schema"])
    unsent = call(admin_user, "PATCH", "/manage/tools/lookups__lookup", {"access": "read"})
    assert unsent.status_code == 400 and "seen" in unsent.json()["detail"]

    listing[:] = [SWAPPED]
    assert call(admin_user, "POST", "/manage/servers/lookups/discover").status_code == 200
    refused = call(admin_user, "PATCH", "/manage/tools/lookups__lookup", {"access": "read", "seen": proposed["digest"]})
    assert refused.status_code == 400 and "listed it differently" in refused.json()["detail"]
    tool = Tool.objects.get(name="lookups__lookup")
    assert (tool.access, tool.usable, tool.proposed["description"]) == ("", False, SWAPPED["description"])
    assert not AuditRecord.objects.filter(outcome="tool_accepted").exists()

    now = call(admin_user, "GET", "/manage/tools/lookups__lookup").json()["proposed"]
    assert now["description"] == SWAPPED["description"] and now["digest"] != proposed["digest"]
    accepted = call(admin_user, "PATCH", "/manage/tools/lookups__lookup", {"access": "write", "seen": now["digest"]})
    assert accepted.status_code == 200 and accepted.json()["proposed"] is None
    assert Tool.objects.get(name="lookups__lookup").input_schema == SWAPPED["input_schema"]


def test_a_patch_refused_for_its_policy_does_not_accept_the_listing_it_came_with(admin_user, monkeypatch):
    """Accepting a listing as a read and setting a policy (a read has none) in one PATCH is refused whole: the
    listing still waits, unaccepted and unrecorded, as if the request had not been sent."""
    lookups_listing(admin_user, monkeypatch)
    proposed = call(admin_user, "GET", "/manage/tools/lookups__lookup").json()["proposed"]
    refused = call(
        admin_user,
        "PATCH",
        "/manage/tools/lookups__lookup",
        {"access": "read", "seen": proposed["digest"], "requires_approval": False},
    )
    assert refused.status_code == 400 and "no approval policy" in refused.json()["detail"], refused.content
    tool = Tool.objects.get(name="lookups__lookup")
    assert (tool.access, tool.usable, tool.proposed_digest()) == ("", False, proposed["digest"])
    assert not AuditRecord.objects.filter(outcome__in=("tool_accepted", "policy_changed")).exists()
    accepted = call(
        admin_user, "PATCH", "/manage/tools/lookups__lookup", {"access": "read", "seen": proposed["digest"]}
    )
    assert accepted.status_code == 200 and accepted.json()["access"] == "read"  # the same acceptance, alone


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": "Memory"}, "name"),
        ({"command": ""}, "command"),
        ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, "not allowed"),
        ({"credential_env": "GATEHOUSE_SECRET_KEY"}, "not allowed"),
        ({"transport": "http", "url": "http://203.0.113.9/mcp"}, ""),
        ({"rate_limit_window_s": 86_401}, "rate_limit_window_s"),  # as on the server's page
        ({"rate_limit_calls": 2**31}, "rate_limit_calls"),  # past what PostgreSQL stores
    ],
)
def test_a_registration_that_cannot_run_safely_is_refused_with_a_reason(admin_user, registration, change, says):
    response = call(admin_user, "POST", "/manage/servers", registration | change)
    assert response.status_code == 400, response.content
    said = response.json()
    assert says in said["detail"] or says in [error["field"] for error in said.get("errors", [])], said
    assert not ToolServer.objects.filter(kind="external").exists()
    assert not AuditRecord.objects.filter(outcome="server_registered").exists()


def test_an_http_servers_url_takes_no_query_where_a_key_would_be_shown_on_pages_and_in_the_trail(
    admin_user, registration, settings
):
    """A credential belongs in the credential (sealed, sent as its header), not in a URL that the server's pages,
    the API's listing and the registration's audit record show."""
    settings.BACKEND_ALLOWED_HOSTS = ["mcp.vendor.example"]
    http = {key: value for key, value in registration.items() if key not in ("command", "args", "env")}
    http |= {"transport": "http", "credential_env": ""}
    for url in ("https://mcp.vendor.example/mcp?api_key=s3cret-in-url", "https://mcp.vendor.example/mcp#s3cret-in-url"):
        refused = call(admin_user, "POST", "/manage/servers", http | {"url": url})
        assert refused.status_code == 400 and "query" in refused.json()["detail"], refused.content
    assert not AuditRecord.objects.filter(extra__icontains="s3cret-in-url").exists()
    assert (
        call(admin_user, "POST", "/manage/servers", http | {"url": "https://mcp.vendor.example/mcp"}).status_code == 201
    )
    server = ToolServer.objects.get(name=http["name"])
    with pytest.raises(administration.Refused, match="query"):  # pointed at one later, as the server's page does
        administration.update_server(server, admin_user, {"url": "https://mcp.vendor.example/mcp?k=s3cret-in-url"})
    # One registered with a query before this rule can still be switched off (in an incident, say).
    ToolServer.objects.filter(pk=server.pk).update(url="https://mcp.vendor.example/mcp?tenant=acme")
    server.refresh_from_db()
    assert administration.update_server(server, admin_user, {"enabled": False}) == {"enabled"}


def test_only_an_admin_registers_or_accepts(make_user, admin_user, registration):
    analyst = make_user("ana", ANALYST)
    assert call(analyst, "POST", "/manage/servers", registration).status_code == 403
    assert not ToolServer.objects.filter(name="memory").exists()
    registered = call(admin_user, "POST", "/manage/servers", registration)
    assert registered.status_code == 201
    assert call(analyst, "POST", "/manage/servers/memory/discover").status_code == 403
    credential = {"secret": CANARY, "seen": registered.json()["pointed_at"]}
    assert call(admin_user, "PUT", "/manage/servers/memory/credential", credential).status_code == 200
    assert call(admin_user, "POST", "/manage/servers/memory/discover").status_code == 200
    refused = call(analyst, "PATCH", "/manage/tools/memory__read_graph", {"access": "read"})
    assert refused.status_code == 403 and set(refused.json()) == {"detail"}
    assert Tool.objects.get(name="memory__read_graph").proposed is not None  # still waiting
    assert not AuditRecord.objects.filter(outcome="tool_accepted").exists()
