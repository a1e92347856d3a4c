"""Discovery: a tool whose description or schema changed is disabled until an admin accepts the change.
And a disabled tool (or server) answers a typed tool_disabled error, never its backend."""

import pytest

from console.manage import administration
from investigations.models import AuditRecord
from toolserver import config
from toolserver.catalog import SERVERS
from toolserver.lab import estate
from toolserver.models import Tool, ToolServer

pytestmark = pytest.mark.django_db(transaction=True)

LOOKUP = {"kind": "ip", "value": estate.ATTACKER_IP}


def offered(name: str) -> dict:
    return next(tool for tool in config.offered_tools() if tool["name"] == name)


def test_a_discovery_of_unchanged_tools_changes_nothing(lab):
    for server in ToolServer.objects.all():
        assert administration.discover(server) == []  # what the servers advertise is what the catalog seeded
    assert not Tool.objects.filter(discovered_at__isnull=True).exists()
    assert not Tool.objects.exclude(proposed=None).exists()
    assert not AuditRecord.objects.filter(kind="admin_change").exists()


def test_a_changed_description_is_disabled_and_kept_from_the_model_until_accepted(gateway, context, admin_user):
    Tool.objects.filter(name="lookup_indicator").update(description="Accepted words from an earlier release.")
    intel = ToolServer.objects.get(name="intel")

    assert administration.discover(intel) == ["lookup_indicator"]
    tool = Tool.objects.get(name="lookup_indicator")
    assert not tool.usable
    assert tool.proposed["description"] == SERVERS["intel"].tool("lookup_indicator").description
    assert offered("lookup_indicator")["description"] == "Accepted words from an earlier release."
    refused = gateway.call("lookup_indicator", LOOKUP, context)
    assert refused["reason"] == "tool_disabled" and "not yet accepted" in refused["guidance"]
    found = AuditRecord.objects.get(kind="admin_change", outcome="tool_change_found")
    assert (found.actor, found.tool, found.extra["before"]["description"]) == (
        "system",
        "lookup_indicator",
        "Accepted words from an earlier release.",
    )

    assert administration.discover(intel) == []  # the same change is not found twice
    administration.accept_tool_change(tool, admin_user, seen=tool.proposed_digest())
    assert Tool.objects.get(name="lookup_indicator").usable
    assert offered("lookup_indicator")["description"] == SERVERS["intel"].tool("lookup_indicator").description
    assert gateway.call("lookup_indicator", LOOKUP, context)["status"] == "ok"
    assert (
        AuditRecord.objects.filter(kind="admin_change", outcome="tool_change_accepted", actor="user:ada").count() == 1
    )


def test_a_changed_schema_is_a_change_too(gateway, context):
    Tool.objects.filter(name="get_host").update(input_schema={"type": "object", "properties": {}})
    assert administration.discover(ToolServer.objects.get(name="edr")) == ["get_host"]
    assert gateway.call("get_host", {"host": estate.PHISHED_HOST}, context)["reason"] == "tool_disabled"
    assert gateway.call("get_process_tree", {"host": estate.PHISHED_HOST}, context)["status"] == "ok"


def test_a_disabled_tool_or_server_answers_tool_disabled_and_never_reaches_its_server(gateway, context, admin_user):
    edr = ToolServer.objects.get(name="edr")
    administration.update_tool(Tool.objects.get(name="get_host"), admin_user, enabled=False)
    result = gateway.call("get_host", {"host": estate.PHISHED_HOST}, context)
    assert (result["status"], result["reason"], result["retryable"]) == ("error", "tool_disabled", False)
    assert "switched it off" in result["guidance"]
    assert gateway.call("get_process_tree", {"host": estate.PHISHED_HOST}, context)["status"] == "ok"

    administration.update_server(edr, admin_user, {"enabled": False})
    result = gateway.call("get_process_tree", {"host": estate.PHISHED_HOST}, context)
    assert result["reason"] == "tool_disabled" and "switched off its server, edr" in result["guidance"]
    records = AuditRecord.objects.filter(kind="tool_call", reason="tool_disabled").order_by("seq")
    assert [(record.tool, record.outcome, record.backend_status) for record in records] == [
        ("get_host", "error", ""),
        ("get_process_tree", "error", ""),
    ]
    changes = AuditRecord.objects.filter(kind="admin_change").order_by("seq")
    assert [(change.outcome, change.extra) for change in changes] == [
        ("tool_changed", {"before": {"enabled": True}, "after": {"enabled": False}}),
        ("server_changed", {"before": {"enabled": True}, "after": {"enabled": False}}),
    ]


def test_the_command_reports_each_server_and_the_changes_it_found(lab):
    from io import StringIO

    from django.core.management import call_command

    Tool.objects.filter(name="open_ticket").update(description="Old words.")
    out = StringIO()
    call_command("discover_tools", stdout=out)
    lines = dict(line.split(maxsplit=1) for line in out.getvalue().splitlines())
    assert lines == dict.fromkeys(SERVERS, "as accepted") | {
        "ticketing": "changed, disabled until accepted: open_ticket"
    }
    found = AuditRecord.objects.get(kind="admin_change", outcome="tool_change_found")
    assert (found.actor, found.tool) == ("manage.py discover_tools", "open_ticket")
