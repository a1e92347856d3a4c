"""An MCP server nobody here wrote, behind the gate: @modelcontextprotocol/server-memory over stdio
(installed by `make mcp-servers` from integrations/mcp-servers/package-lock.json).

Registered, its tools pinned and waiting for an admin, read and write as the admin classified
them, arguments checked against the accepted schema, its answers in the one envelope, a write
refused without approval and done once with it, and its process holding only its own environment.
"""

import json

import pytest
from django.conf import settings

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import accept_as_listed
from tests.toolserver.conftest import launched_pids, mcp_server_js, read_environ
from toolserver import config
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool, ToolServer

pytestmark = pytest.mark.django_db(transaction=True)

MEMORY_JS = mcp_server_js("server-memory")
CANARY = "memory-canary-3f9a1c7e5b2d"
ENTITY = {"name": "ws-fin-07", "entityType": "host", "observations": ["beaconing to 203.0.113.9"]}


@pytest.fixture
def memory(register_node_server, admin_user, tmp_path):
    graph = tmp_path / "memory.jsonl"
    server = register_node_server(
        "memory", "server-memory", env={"MEMORY_FILE_PATH": str(graph)}, credential_env="MEMORY_TOKEN"
    )
    administration.set_credential(server, admin_user, secret=CANARY)
    server.graph = graph
    return server


@pytest.fixture
def accepted(memory, admin_user):
    administration.discover(memory)
    accept_as_listed(Tool.objects.get(name="memory__read_graph"), admin_user, access="read")
    accept_as_listed(
        Tool.objects.get(name="memory__create_entities"), admin_user, access="write", target_args=["entities"]
    )
    return memory


def context(approval: str = "") -> CallContext:
    return CallContext(correlation_id="inv-ext-1", trigger="alert-ext-1", approval=approval)


def entities(gateway: Gateway) -> list[dict]:
    result = gateway.call("memory__read_graph", {}, context())
    assert result["status"] == "ok", result
    return result["data"]["entities"]


def test_its_tools_are_pinned_and_wait_for_an_admin_before_the_model_sees_them(memory):
    found = administration.discover(memory)
    assert {"memory__read_graph", "memory__create_entities"} <= set(found)
    read_graph = Tool.objects.get(name="memory__read_graph")
    assert (read_graph.remote_name, read_graph.usable, read_graph.input_schema) == ("read_graph", False, {})
    assert read_graph.proposed["annotations"].get("readOnlyHint") is True  # shown as a hint, not trusted
    assert not any(tool["name"].startswith("memory__") for tool in config.offered_tools())
    refused = Gateway().call("memory__read_graph", {}, context())
    assert (refused["status"], refused["reason"]) == ("error", "tool_disabled")
    assert set(found) == set(
        AuditRecord.objects.filter(kind="admin_change", outcome="tool_change_found").values_list("tool", flat=True)
    )
    assert administration.discover(memory) == []  # the same listing is not found twice


def test_an_unclassified_tool_is_a_write(memory):
    administration.discover(memory)
    _, tool = config.find_tool("memory__read_graph")
    assert tool.write  # nobody said it only reads: its readOnlyHint is the server's word, not ours


def test_a_read_returns_the_envelope_and_is_audited_once(accepted):
    gateway = Gateway()
    result = gateway.call("memory__read_graph", {}, context())
    assert (result["status"], result["source"], result["truncated"]) == ("ok", "mcp:memory", False)
    assert result["data"] == {"entities": [], "relations": []}
    offered = {tool["name"]: tool for tool in config.offered_tools()}
    assert offered["memory__create_entities"]["input_schema"]["additionalProperties"] is False
    records = AuditRecord.objects.filter(kind="tool_call", tool="memory__read_graph")
    assert [(record.server, record.outcome) for record in records] == [("memory", "ok")]


def test_unknown_or_malformed_arguments_never_reach_the_server(accepted):
    gateway = Gateway()
    approved = context(approval="test-approval")
    unknown = gateway.call("memory__create_entities", {"entities": [ENTITY], "also": 1}, approved)
    assert unknown["reason"] == "invalid_arguments" and "also" in unknown["guidance"]
    wrong = gateway.call("memory__create_entities", {"entities": "ws-fin-07"}, approved)
    assert wrong["reason"] == "invalid_arguments" and "beaconing" not in wrong["guidance"]
    assert gateway.call("memory__read_graph", {"x": 1}, context())["reason"] == "invalid_arguments"
    assert entities(gateway) == []


def test_a_write_waits_for_approval_then_happens_once_and_a_repeat_replays(accepted):
    gateway = Gateway()
    refused = gateway.call("memory__create_entities", {"entities": [ENTITY]}, context())
    assert refused["reason"] == "approval_required"
    assert entities(gateway) == []

    done = gateway.call("memory__create_entities", {"entities": [ENTITY]}, context(approval="approved-1"))
    assert done["status"] == "ok" and "replayed" not in json.dumps(done["data"])
    again = gateway.call("memory__create_entities", {"entities": [ENTITY]}, context(approval="approved-1"))
    assert again["status"] == "ok" and again["data"]["replayed"] is True
    assert [entity["name"] for entity in entities(gateway)] == ["ws-fin-07"]
    lines = [json.loads(line) for line in accepted.graph.read_text().splitlines() if line.strip()]
    assert [line["name"] for line in lines if line.get("type") == "entity"] == ["ws-fin-07"]
    outcomes = AuditRecord.objects.filter(kind="tool_call", tool="memory__create_entities").order_by("seq")
    assert [record.outcome for record in outcomes] == ["error", "dispatched", "ok", "replayed"]


def test_a_changed_listing_disables_the_tool_until_accepted_again(accepted, admin_user):
    gateway = Gateway()
    assert gateway.call("memory__read_graph", {}, context())["status"] == "ok"
    Tool.objects.filter(name="memory__read_graph").update(description="What an earlier release said.")
    assert administration.discover(accepted) == ["memory__read_graph"]
    refused = gateway.call("memory__read_graph", {}, context())
    assert (refused["reason"], refused["retryable"]) == ("tool_disabled", False)
    accept_as_listed(Tool.objects.get(name="memory__read_graph"), admin_user, access="read")
    assert gateway.call("memory__read_graph", {}, context())["status"] == "ok"


def test_its_process_has_only_its_own_environment_and_its_credential(accepted):
    assert Gateway().call("memory__read_graph", {}, context())["status"] == "ok"
    [pid] = node_pids()
    environ = read_environ(pid)
    assert environ == {"PATH": environ["PATH"], "MEMORY_FILE_PATH": str(accepted.graph), "MEMORY_TOKEN": CANARY}
    assert settings.CREDENTIALS_KEY not in json.dumps(environ)
    assert CANARY not in json.dumps(list(AuditRecord.objects.values_list("extra", "arguments")))
    assert CANARY not in json.dumps(config.offered_tools())


def test_a_changed_command_revokes_its_credential(accepted, admin_user):
    administration.update_server(accepted, admin_user, {"args": [str(MEMORY_JS), "--other"]})
    accepted.refresh_from_db()
    assert accepted.credential.revoked_at is not None
    assert config.binding_of(accepted).credential_ref == ""


def test_a_credential_is_bound_to_the_command_it_was_set_for_whatever_path_changed_the_command(
    memory, admin_user, make_user
):
    """Two admins at once: one re-points the command from the row their page loaded, the other has just set a
    new credential; the re-pointing revokes the new one (it is decided on the row as it stands, not the page's
    copy). And a path that revokes nothing still never hands a credential to another command."""
    other_admin = make_user("bea", "admin")
    loaded_before = ToolServer.objects.select_related("credential").get(pk=memory.pk)
    administration.set_credential(memory, other_admin, secret="another-" + CANARY)
    administration.update_server(loaded_before, admin_user, {"command": "/usr/bin/env"})
    now = ToolServer.objects.select_related("credential").get(pk=memory.pk)
    assert now.command == "/usr/bin/env" and now.credential.revoked_at is not None
    assert config.binding_of(now).credential_ref == ""

    administration.set_credential(now, other_admin, secret="for-env-" + CANARY)
    assert config.binding_of(ToolServer.objects.select_related("credential").get(pk=memory.pk)).credential_ref
    ToolServer.objects.filter(pk=memory.pk).update(command="node", args=["--other"])  # a path with no revocation
    assert config.binding_of(ToolServer.objects.select_related("credential").get(pk=memory.pk)).credential_ref == ""


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "Memory"}, "name"),
        ({"name": "mem", "command": ""}, "command"),
        ({"name": "mem", "command": "node", "env": {"GATEHOUSE_SECRET_KEY": "x"}}, "not allowed"),
        ({"name": "mem", "command": "node", "env": {"LD_PRELOAD": "/tmp/x.so"}}, "not allowed"),
        ({"name": "mem", "command": "node", "credential_env": "NODE_OPTIONS"}, "not allowed"),
        ({"name": "mem", "transport": "http", "url": "https://mcp.example.com/mcp"}, "not an allowed backend host"),
        ({"name": "siem", "command": "node"}, "already"),
    ],
)
def test_a_registration_that_cannot_run_safely_is_refused(admin_user, fields, says):
    with pytest.raises(administration.Refused, match=says):
        administration.register_external_server(admin_user, fields)
    assert not ToolServer.objects.filter(kind="external").exists()


def test_only_an_admin_registers_and_the_record_names_variables_not_their_values(admin_user, analyst, tmp_path):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        administration.register_external_server(analyst, {"name": "mem", "command": "node"})
    administration.register_external_server(
        admin_user, {"name": "mem", "command": "node", "env": {"MEMORY_FILE_PATH": "/srv/private-value"}}
    )
    record = AuditRecord.objects.get(kind="admin_change", outcome="server_registered")
    assert record.extra["after"]["env"] == ["MEMORY_FILE_PATH"] and "private-value" not in json.dumps(record.extra)


def node_pids() -> list[int]:
    """The memory server's processes: children of this process's relays (the launcher stays as their parent)."""
    return launched_pids("memory", str(MEMORY_JS))


def test_through_the_gate_an_external_write_is_a_request_an_analyst_approves_and_it_fires_once(
    accepted, make_investigation, analyst
):
    from investigations.approvals import services as approvals
    from investigations.runs import services

    investigation = make_investigation("EXT-1")
    owner = services.claim(investigation.pk)
    gateway = Gateway()

    def ask(tool_use_id: str):
        use = {"id": tool_use_id, "name": "memory__create_entities", "input": {"entities": [ENTITY]}}
        return approvals.request_action(investigation, use, owner=owner, gateway=gateway)

    first = ask("toolu_ext_1")
    assert (first.state, first.server, first.tool) == ("pending", "memory", "memory__create_entities")
    assert approvals.may_approve(analyst, "memory__create_entities")  # its policy came with its acceptance
    assert entities(gateway) == []  # nothing until a person says so
    approvals.approve(first.pk, analyst)
    approvals.execute(first.pk)
    first.refresh_from_db()
    assert first.state == "succeeded"
    assert [entity["name"] for entity in entities(gateway)] == ["ws-fin-07"]

    second = ask("toolu_ext_2")  # the model asks again for the same alert and target
    assert second.idempotency_key == first.idempotency_key
    approvals.approve(second.pk, analyst)
    approvals.execute(second.pk)
    second.refresh_from_db()
    assert second.result["data"]["replayed"] is True
    assert [entity["name"] for entity in entities(gateway)] == ["ws-fin-07"]


def test_its_rate_limit_is_its_own(accepted):
    from tests.support import set_rate_limit
    from toolserver.ratelimit import get_rate_limiter

    get_rate_limiter().reset("memory")
    set_rate_limit("memory", 1, 60)
    try:
        gateway = Gateway()
        assert gateway.call("memory__read_graph", {}, context())["status"] == "ok"
        throttled = gateway.call("memory__read_graph", {}, context())
        assert (throttled["reason"], throttled["retryable"]) == ("rate_limited", True)
        assert AuditRecord.objects.filter(tool="memory__read_graph", outcome="rate_limited").count() == 1
    finally:
        get_rate_limiter().reset("memory")


def test_a_long_target_is_shown_cut_and_keyed_whole(accepted, make_investigation, analyst):
    """server-memory's target is the whole entities list: longer than a person reads (and the column holds)."""
    from investigations.approvals import services as approvals
    from investigations.runs import services

    investigation = make_investigation("EXT-LONG")
    owner = services.claim(investigation.pk)
    gateway = Gateway()
    long = dict(ENTITY, observations=["beaconing to 203.0.113.9 every 60 seconds"] * 8)
    longer = dict(long, observations=[*long["observations"], "and to 198.51.100.4"])  # the same first 200 characters

    def ask(tool_use_id: str, entity: dict):
        use = {"id": tool_use_id, "name": "memory__create_entities", "input": {"entities": [entity]}}
        return approvals.request_action(investigation, use, owner=owner, gateway=gateway)

    first, second = ask("toolu_long_1", long), ask("toolu_long_2", longer)
    assert len(first.target) == 200 and first.target.endswith("\u2026") and first.target == second.target
    assert first.idempotency_key != second.idempotency_key  # keyed on the whole target
    approvals.approve(first.pk, analyst)
    approvals.execute(first.pk)
    first.refresh_from_db()
    assert first.state == "succeeded"
    assert [entity["name"] for entity in entities(gateway)] == ["ws-fin-07"]
