"""@modelcontextprotocol/server-everything over stdio (the MCP project's reference server, installed by
`make mcp-servers`): whatever it answers becomes the one envelope, and what it asks of us is refused.

Structured content as data, an image summarised (never its bytes), a long answer capped with
truncated: true, and its sampling and elicitation requests refused, the refusal kept in the call's
audit record.
"""

import json
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
