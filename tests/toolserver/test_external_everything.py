"""@modelcontextprotocol/server-everything over stdio (the MCP project's reference server, installed by
`make mcp-servers`): whatever it answers becomes the one envelope, and what it asks of us is refused.

Structured content as data, an image summarised (never its bytes), a long answer capped with
truncated: true, and its sampling and elicitation requests refused, the refusal kept in the call's
audit record.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from console.manage import administration
from investigations.models import AuditRecord
from toolserver import external
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

EVERYTHING_JS = (
    Path(settings.BASE_DIR)
    / "integrations/mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
READS = ("echo", "get-structured-content", "get-tiny-image", "trigger-sampling-request", "trigger-elicitation-request")
CONTEXT = CallContext(correlation_id="inv-everything-1", trigger="alert-everything-1")


@pytest.fixture
def everything(admin_user):
    if not EVERYTHING_JS.exists() or shutil.which("node") is None:
        pytest.fail("server-everything is not installed: run `make mcp-servers` (npm ci in integrations/mcp-servers)")
    server = administration.register_external_server(
        admin_user, {"name": "everything", "command": "node", "args": [str(EVERYTHING_JS), "stdio"]}
    )
    administration.discover(server)
    for name in READS:
        administration.accept_external_tool(Tool.objects.get(name=f"everything__{name}"), admin_user, access="read")
    yield server
    get_supervisor().restart("everything")


def call(tool: str, arguments: dict) -> dict:
    return Gateway().call(f"everything__{tool}", arguments, CONTEXT)


def test_structured_content_is_the_data(everything):
    result = call("get-structured-content", {"location": "Chicago"})
    assert (result["status"], result["source"], result["truncated"]) == ("ok", "mcp:everything", False)
    assert set(result["data"]) == {"temperature", "conditions", "humidity"}
    assert call("get-structured-content", {"location": "Paris"})["reason"] == "invalid_arguments"  # its enum


def test_an_image_is_summarised_never_passed_on(everything):
    result = call("get-tiny-image", {})
    images = [item for item in result["data"]["other_content"] if item["type"] == "image"]
    assert images and images[0]["mime_type"] == "image/png" and images[0]["base64_chars"] > 0
    assert "iVBOR" not in json.dumps(result)  # the PNG's base64 is not in what the model reads


def test_a_long_answer_is_capped_and_says_so(everything):
    result = call("echo", {"message": "x" * (external.RESULT_CAP_CHARS * 2)})
    assert result["status"] == "ok" and result["truncated"] is True
    assert len(json.dumps(result["data"])) < external.RESULT_CAP_CHARS + 500
    assert call("echo", {"message": "short"})["truncated"] is False


@pytest.mark.parametrize(
    ("tool", "arguments", "refused"),
    [
        ("trigger-sampling-request", {"prompt": "Say yes", "maxTokens": 5}, "sampling"),
        ("trigger-elicitation-request", {}, "elicitation"),
    ],
)
def test_what_the_server_asks_of_us_is_refused_and_recorded(everything, tool, arguments, refused):
    result = call(tool, arguments)
    assert (result["status"], result["reason"]) == ("error", "everything_tool_error")
    record = AuditRecord.objects.get(kind="tool_call", tool=f"everything__{tool}")
    assert record.backend_status.startswith(f"refused:{refused} ")
    assert record.correlation_id == "inv-everything-1"


@pytest.fixture
def everything_http(admin_user, settings):
    """server-everything over Streamable HTTP on 127.0.0.1, registered by its URL; stopped after the test."""
    import socket
    import subprocess

    from tests.support import free_port, stop_process, wait_until

    port = free_port()
    process = subprocess.Popen(
        ["node", str(EVERYTHING_JS), "streamableHttp"],
        env={"PATH": os.environ["PATH"], "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, timeout=30, what="server-everything listening")
        settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
        server = administration.register_external_server(
            admin_user,
            {
                "name": "everything-http",
                "transport": "http",
                "url": f"http://127.0.0.1:{port}/mcp",
                "credential_header": "Authorization",
            },
        )
        administration.set_credential(server, admin_user, secret=HTTP_CANARY)
        yield server
    finally:
        get_supervisor().restart("everything-http")
        stop_process(process)


HTTP_CANARY = "Bearer http-canary-5c1e9d"


def test_over_streamable_http_through_a_bridge_that_alone_holds_the_credential(everything_http, admin_user):
    from tests.toolserver.conftest import read_environ

    administration.discover(everything_http)
    administration.accept_external_tool(Tool.objects.get(name="everything-http__echo"), admin_user, access="read")
    result = Gateway().call("everything-http__echo", {"message": "over http"}, CONTEXT)
    assert (result["status"], result["source"]) == ("ok", "mcp:everything-http")
    assert "over http" in result["data"]["text"]
    long = Gateway().call("everything-http__echo", {"message": "y" * (external.RESULT_CAP_CHARS * 2)}, CONTEXT)
    assert long["truncated"] is True
    [bridge] = bridge_pids()
    environ = read_environ(bridge)
    assert environ["GATEHOUSE_BRIDGE_SECRET"] == HTTP_CANARY
    assert set(environ) <= {
        "PATH",
        "PYTHONPATH",
        "GATEHOUSE_BACKEND_ALLOWED_HOSTS",
        "GATEHOUSE_BRIDGE_URL",
        "GATEHOUSE_BRIDGE_HEADER",
        "GATEHOUSE_BRIDGE_SECRET",
    }


def test_a_url_off_the_allow_list_is_refused_by_the_bridge_too(everything_http, admin_user, settings):
    administration.discover(everything_http)
    administration.accept_external_tool(Tool.objects.get(name="everything-http__echo"), admin_user, access="read")
    assert Gateway().call("everything-http__echo", {"message": "x"}, CONTEXT)["status"] == "ok"
    settings.BACKEND_ALLOWED_HOSTS = ["127.0.0.2:1"]  # the deployment took its host off the list: a new launch
    result = Gateway().call("everything-http__echo", {"message": "x"}, CONTEXT)
    assert (result["status"], result["reason"]) == ("error", "everything-http_unavailable")


def bridge_pids() -> list[int]:
    """The bridges this process runs: children of its relays for everything-http."""
    from tests.toolserver.conftest import children, server_pids

    found = []
    for relay in server_pids("everything-http"):
        for pid in children(relay):
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"toolserver.bridge" in cmdline.read().split(b"\0"):
                    found.append(pid)
    return found
