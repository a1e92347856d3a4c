"""Bring your own MCP server from the Tool servers pages: register it, discover its tools, accept each
as read or write with the server's hints beside the choice (server-memory over stdio)."""

import pytest
from django.test import Client
from django.urls import reverse

from investigations.models import AuditRecord
from tests.toolserver.test_external_servers import MEMORY_JS
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


REGISTRATION = {
    "name": "memory",
    "transport": "stdio",
    "command": "node",
    "args": str(MEMORY_JS),
    "env": "MEMORY_FILE_PATH=/tmp/gatehouse-test-pages-memory.jsonl",
    "credential_env": "",
    "timeout_s": 30,
    "rate_limit_calls": 60,
    "rate_limit_window_s": 60,
}


def test_an_admin_registers_discovers_and_classifies_from_the_pages(admin_user):
    client = signed_in(admin_user)
    assert "register-form" in client.get(reverse("manage:index")).content.decode()
    response = client.post(reverse("manage:register"), REGISTRATION)
    assert response.status_code == 302 and response["Location"] == reverse("manage:server", args=["memory"])
    server = ToolServer.objects.get(name="memory")
    assert (server.kind, server.args, server.env) == (
        "external",
        [str(MEMORY_JS)],
        {"MEMORY_FILE_PATH": "/tmp/gatehouse-test-pages-memory.jsonl"},
    )
    try:
        assert client.post(reverse("manage:discover", args=["memory"])).status_code == 302
    finally:
        get_supervisor().restart("memory")
    page = client.get(reverse("manage:tool", args=["memory__read_graph"])).content.decode()
    assert "accept-form" in page and "readOnlyHint: true" in page

    url = reverse("manage:accept_change", args=["memory__create_entities"])
    assert client.post(url, {}).status_code == 400  # read or write: nobody's silence is a read
    assert client.post(url, {"access": "write", "target_args": ["nonsense"]}).status_code == 400
    assert client.post(url, {"access": "write", "target_args": ["entities"]}).status_code == 302
    tool = Tool.objects.get(name="memory__create_entities")
    assert (tool.access, tool.target_args, tool.usable) == ("write", ["entities"], True)
    page = client.get(reverse("manage:tool", args=["memory__create_entities"])).content.decode()
    assert "tool-classification" in page and "its target: entities" in page
    assert AuditRecord.objects.filter(kind="admin_change", outcome="tool_accepted", actor="user:ada").count() == 1

    # Switched off on its page: none of its tools is called (each answers tool_disabled; it stays offered, so a
    # running investigation's prompt does not change: config.offered_tools), and the change is recorded.
    edit = REGISTRATION.copy()
    del edit["name"]
    assert client.post(reverse("manage:server", args=["memory"]), edit).status_code == 302  # enabled unticked
    assert not Tool.objects.get(name="memory__create_entities").usable
    refused = Gateway().call("memory__read_graph", {}, CallContext(correlation_id="inv-pages", trigger="alert-pages"))
    assert refused["reason"] == "tool_disabled"
    change = AuditRecord.objects.filter(kind="admin_change", server="memory").latest("seq")
    assert change.extra["after"]["enabled"] is False
    assert client.post(reverse("manage:server", args=["memory"]), edit | {"enabled": "on"}).status_code == 302
    assert Tool.objects.get(name="memory__create_entities").usable


def test_a_registration_that_cannot_run_safely_is_shown_its_reason(admin_user):
    response = signed_in(admin_user).post(reverse("manage:register"), REGISTRATION | {"env": "LD_PRELOAD=/tmp/x.so"})
    assert response.status_code == 400 and "LD_PRELOAD is not allowed" in response.content.decode()
    assert not ToolServer.objects.filter(name="memory").exists()


def test_only_an_admin_registers(manager):
    assert signed_in(manager).post(reverse("manage:register"), REGISTRATION).status_code == 403
    assert not ToolServer.objects.filter(name="memory").exists()
