"""A vendor's own MCP server from PyPI behind the gate: CrowdStrike's falcon-mcp, in a virtualenv of
its own (`make vendor-mcp`, pinned by integrations/vendor-mcp/falcon.txt), registered over stdio
as an admin does: its entry point as the command, its client id and base URL as variables, its
client secret as the credential.

falcon-mcp signs in before it answers anything: FalconMCPServer.__init__ calls
FalconClient.authenticate() (FalconPy's login(), a POST to <FALCON_BASE_URL>/oauth2/token) and
exits when that is not a 201, before the MCP session starts. So its tools cannot be listed with no
token endpoint at all (the last test); here the endpoint is the loopback stand-in of Falcon's
API (vendor_standins.FalconStandIn), and anything the process would send elsewhere goes to a
proxy address on loopback that refuses every connection. No test here reaches a host off loopback.
"""

import json
import socket
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import accept_as_listed
from tests.toolserver.conftest import launched_pids, read_environ, server_pids
from tests.toolserver.vendor_standins import FALCON_CLIENT_ID, FalconStandIn
from toolserver import config
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool
from toolserver.supervisor import ServerDidNotStart, get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

FALCON_MCP = Path(settings.BASE_DIR) / "var/vendor-mcp/falcon/bin/falcon-mcp"
CANARY = "falcon-canary-7d41e9b03a6c"
# Its hosts module only (an admin enables what they mean to use), and the three tools it always has.
EXPECTED = {
    "falcon__falcon_check_connectivity",
    "falcon__falcon_list_enabled_modules",
    "falcon__falcon_list_enabled_tools",
    "falcon__falcon_search_hosts",
    "falcon__falcon_get_host_details",
    "falcon__falcon_manage_host_grouping_tags",
}


@pytest.fixture
def refusing_port():
    """A loopback port bound and never listened on: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def stand_in():
    falcon = FalconStandIn(CANARY)
    yield falcon
    falcon.close()


def register(admin_user, base_url: str, refusing_port: int):
    if not FALCON_MCP.exists():
        pytest.fail("falcon-mcp is not installed: run `make vendor-mcp`")
    proxy = f"http://127.0.0.1:{refusing_port}"
    server = administration.register_external_server(
        admin_user,
        {
            "name": "falcon",
            "command": str(FALCON_MCP),
            "args": ["--modules", "hosts"],
            "env": {
                "FALCON_CLIENT_ID": FALCON_CLIENT_ID,
                "FALCON_BASE_URL": base_url,
                # requests and httpx send anything not for 127.0.0.1 to the proxy, which refuses it.
                "HTTP_PROXY": proxy,
                "HTTPS_PROXY": proxy,
                "NO_PROXY": "127.0.0.1",
            },
            "credential_env": "FALCON_CLIENT_SECRET",
        },
    )
    administration.set_credential(server, admin_user, secret=CANARY)
    return server


@pytest.fixture
def falcon(admin_user, stand_in, refusing_port):
    server = register(admin_user, stand_in.url, refusing_port)
    yield server
    get_supervisor().restart("falcon")  # its process stops with the test


def context() -> CallContext:
    return CallContext(correlation_id="inv-vendor-1", trigger="alert-vendor-1")


def test_its_tools_are_listed_pinned_and_wait_for_an_admin(falcon, stand_in):
    found = administration.discover(falcon)
    assert set(found) == EXPECTED
    tools = {tool.name: tool for tool in Tool.objects.filter(server=falcon)}
    assert set(tools) == EXPECTED and not any(tool.usable for tool in tools.values())
    search = tools["falcon__falcon_search_hosts"]
    assert search.remote_name == "falcon_search_hosts" and "filter" in search.proposed["input_schema"]["properties"]
    assert not any(tool["name"].startswith("falcon__") for tool in config.offered_tools())
    refused = Gateway().call("falcon__falcon_search_hosts", {}, context())
    assert (refused["status"], refused["reason"]) == ("error", "tool_disabled")
    # It signed in at the stand-in with what the admin gave it, and sent nothing else anywhere there.
    [token] = stand_in.seen("POST", "/oauth2/token")
    assert (token.form["client_id"], token.form["client_secret"]) == ([FALCON_CLIENT_ID], [CANARY])
    assert [request.path for request in stand_in.requests] == ["/oauth2/token"]
    # Not asserted: that a second discovery finds nothing. falcon-mcp 0.20.0 gives its schemas' `examples`
    # as Python sets, so their order differs from one process to the next and the pin sees a change.


def test_its_hints_are_shown_on_the_tool_page_and_never_decide(falcon, admin_user):
    administration.discover(falcon)
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("manage:tool", args=["falcon__falcon_manage_host_grouping_tags"])).content.decode()
    assert "accept-form" in page
    assert "readOnlyHint: false" in page and "destructiveHint: true" in page
    page = client.get(reverse("manage:tool", args=["falcon__falcon_search_hosts"])).content.decode()
    assert "readOnlyHint: true" in page and "destructiveHint: false" in page
    _, search = config.find_tool("falcon__falcon_search_hosts")
    assert search.write  # its readOnlyHint is the vendor's word: unclassified, it is a write


def test_once_accepted_the_model_is_offered_it_and_its_credential_is_in_its_process_alone(falcon, admin_user, stand_in):
    administration.discover(falcon)
    tool = Tool.objects.get(name="falcon__falcon_check_connectivity")
    accept_as_listed(tool, admin_user, access="read")
    assert "falcon__falcon_check_connectivity" in {tool["name"] for tool in config.offered_tools()}

    result = Gateway().call("falcon__falcon_check_connectivity", {}, context())
    assert (result["status"], result["source"]) == ("ok", "mcp:falcon"), result
    # Its answer is text (no structuredContent): its probe's own sign-in at the stand-in succeeded.
    assert json.loads(result["data"]["text"]) == {"connected": True}
    assert len(stand_in.seen("POST", "/oauth2/token")) == 3  # discovery's, this process's, the probe's

    [pid] = falcon_pids()
    environ = read_environ(pid)
    assert environ.pop("FALCON_CLIENT_SECRET") == CANARY
    assert set(environ) == {"PATH", "FALCON_CLIENT_ID", "FALCON_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}
    for relay in server_pids("falcon"):  # the launcher between the worker and the vendor's process
        assert CANARY not in json.dumps(read_environ(relay))
    assert CANARY not in json.dumps(
        list(AuditRecord.objects.values_list("extra", "arguments", "text", "backend_status"))
    )
    assert CANARY not in json.dumps(config.offered_tools())


def test_without_its_token_endpoint_it_never_answers_so_nothing_is_listed(admin_user, refusing_port):
    # Its base URL on loopback where nothing answers (no cloud): the sign-in fails and the process exits.
    server = register(admin_user, f"http://127.0.0.1:{refusing_port}", refusing_port)
    try:
        with pytest.raises(ServerDidNotStart):
            administration.discover(server)
    finally:
        get_supervisor().restart("falcon")
    assert not Tool.objects.filter(server=server).exists()


def test_a_refused_sign_in_is_what_stops_it(admin_user, refusing_port):
    # The same registration as above but for the secret: the token endpoint's 401 alone keeps it from listing.
    wrong = FalconStandIn("not-" + CANARY)
    server = register(admin_user, wrong.url, refusing_port)
    try:
        with pytest.raises(ServerDidNotStart):
            administration.discover(server)
    finally:
        get_supervisor().restart("falcon")
        wrong.close()
    assert {request.path for request in wrong.requests} == {"/oauth2/token"}
    assert not Tool.objects.filter(server=server).exists()


def falcon_pids() -> list[int]:
    """falcon-mcp's processes: children of this process's relays (the launcher stays their parent)."""
    return launched_pids("falcon", str(FALCON_MCP))
