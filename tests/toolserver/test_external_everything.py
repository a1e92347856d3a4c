"""@modelcontextprotocol/server-everything over stdio (the MCP project's reference server, installed by
`make mcp-servers`): whatever it answers becomes the one envelope, and what it asks of us is refused.

Structured content as data, an image summarised (never its bytes), a long answer capped with
truncated: true, and its sampling and elicitation requests refused, the refusal kept in the call's
audit record.
"""

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.conf import settings

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import ROOT, accept_as_listed, free_port, listening, stop_process, wait_until
from tests.toolserver.conftest import mcp_server_js
from toolserver import external
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

EVERYTHING_JS = mcp_server_js("server-everything")
READS = ("echo", "get-structured-content", "get-tiny-image", "trigger-sampling-request", "trigger-elicitation-request")
CONTEXT = CallContext(correlation_id="inv-everything-1", trigger="alert-everything-1")


@pytest.fixture
def everything(register_node_server, admin_user):
    server = register_node_server("everything", "server-everything", args=("stdio",))
    administration.discover(server)
    for name in READS:
        accept_as_listed(Tool.objects.get(name=f"everything__{name}"), admin_user, access="read")
    return server


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


def refusals(backend_status: str) -> set[str]:
    """What a call's record says the server asked of us and was refused ("refused:roots+sampling ok")."""
    said, _, _ = backend_status.partition(" ")
    return set(said.removeprefix("refused:").split("+")) if said.startswith("refused:") else set()


# server-everything asks for the client's roots 350 ms after its session starts (dist/server/roots.js),
# whatever call is then in flight: a refusal of roots may go with any call of the first moments.
SESSION_ASKS = {"roots"}

SERVER_ASKS = pytest.mark.parametrize(
    ("tool", "arguments", "refused"),
    [
        ("trigger-sampling-request", {"prompt": "Say yes", "maxTokens": 5}, "sampling"),
        ("trigger-elicitation-request", {}, "elicitation"),
    ],
)


@SERVER_ASKS
def test_what_the_server_asks_of_us_is_refused_and_recorded(everything, tool, arguments, refused):
    result = call(tool, arguments)
    assert (result["status"], result["reason"]) == ("error", "everything_tool_error")
    record = AuditRecord.objects.get(kind="tool_call", tool=f"everything__{tool}")
    assert refused in refusals(record.backend_status) <= {refused} | SESSION_ASKS, record.backend_status
    assert record.correlation_id == "inv-everything-1"


@contextmanager
def http_server_on_loopback(argv, **popen):
    """A server process started as `argv(port)` on a free loopback port, once it listens; stopped after."""
    port = free_port()
    process = subprocess.Popen(argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        wait_until(lambda: listening(port), timeout=30, what=f"{argv(port)[-2:]} listening")
        yield port
    finally:
        stop_process(process)


def registered_over_http(admin_user, settings, name: str, port: int, **fields):
    """An external server at http://127.0.0.1:<port>/mcp, its host the deployment's allow-list; its processes
    are stopped after the test (by the caller's restart)."""
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    return administration.register_external_server(
        admin_user, {"name": name, "transport": "http", "url": f"http://127.0.0.1:{port}/mcp", **fields}
    )


@pytest.fixture
def everything_http(admin_user, settings):
    """server-everything over Streamable HTTP on 127.0.0.1, registered by its URL; stopped after the test."""
    argv = lambda port: ["env", f"PORT={port}", "node", str(EVERYTHING_JS), "streamableHttp"]  # noqa: E731
    with http_server_on_loopback(argv, env={"PATH": os.environ["PATH"]}) as port:
        try:
            server = registered_over_http(
                admin_user, settings, "everything-http", port, credential_header="Authorization"
            )
            administration.set_credential(server, admin_user, secret=HTTP_CANARY)
            yield server
        finally:
            get_supervisor().restart("everything-http")


HTTP_CANARY = "Bearer http-canary-5c1e9d"


def test_over_streamable_http_through_a_bridge_that_alone_holds_the_credential(everything_http, admin_user):
    from tests.toolserver.conftest import read_environ

    administration.discover(everything_http)
    accept_as_listed(Tool.objects.get(name="everything-http__echo"), admin_user, access="read")
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


@SERVER_ASKS
def test_over_http_what_the_server_asks_of_us_is_refused_by_the_bridge_and_recorded_with_the_call(
    everything_http, admin_user, tool, arguments, refused
):
    """The bridge declares what a stdio client does, refuses it as the supervisor does, and sends the
    refusal back with the call's answer: the call's audit record keeps it, as for a stdio server."""
    administration.discover(everything_http)
    name = f"everything-http__{tool}"
    accept_as_listed(Tool.objects.get(name=name), admin_user, access="read")
    result = Gateway().call(name, arguments, CONTEXT)
    assert result["status"] == "error" and result["reason"].endswith("_tool_error"), result
    record = AuditRecord.objects.get(kind="tool_call", tool=name)
    assert refused in refusals(record.backend_status) <= {refused} | SESSION_ASKS, record.backend_status
    echo = "everything-http__echo"
    accept_as_listed(Tool.objects.get(name=echo), admin_user, access="read")
    assert Gateway().call(echo, {"message": "after"}, CONTEXT)["status"] == "ok"
    after = AuditRecord.objects.get(kind="tool_call", tool=echo).backend_status
    assert after.endswith("ok") and refusals(after) <= SESSION_ASKS, after  # told once, not again


def test_over_http_a_call_that_fails_because_of_a_refusal_keeps_it_in_its_own_record(admin_user, settings):
    """A server of the current protocol asks for input in its answer: refused, the call fails. The refusal went
    with the next call that succeeded (another investigation's, maybe), and with none when no call succeeded."""
    argv = lambda port: [sys.executable, "-m", "tests.toolserver.asking_http_server", str(port)]  # noqa: E731
    with http_server_on_loopback(argv, cwd=ROOT) as port:
        try:
            server = registered_over_http(admin_user, settings, "asking", port)
            administration.discover(server)
            for name in ("asking__ask", "asking__echo", "asking__forge"):
                accept_as_listed(Tool.objects.get(name=name), admin_user, access="read")
            assert Gateway().call("asking__ask", {}, CONTEXT)["status"] == "error"
            assert Gateway().call("asking__echo", {}, CONTEXT)["status"] == "ok"
            assert Gateway().call("asking__forge", {}, CONTEXT)["status"] == "error"
            statuses = dict(AuditRecord.objects.filter(kind="tool_call").values_list("tool", "backend_status"))
            assert statuses["asking__ask"].startswith("refused:elicitation "), statuses
            assert statuses["asking__echo"] == "ok", statuses
            assert not statuses["asking__forge"].startswith("refused:"), statuses  # the server's own word: not ours
        finally:
            get_supervisor().restart("asking")


def test_a_url_off_the_allow_list_is_refused_by_the_bridge_too(everything_http, admin_user, settings):
    administration.discover(everything_http)
    accept_as_listed(Tool.objects.get(name="everything-http__echo"), admin_user, access="read")
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


@pytest.fixture
def slow(register_node_server, admin_user):
    """server-everything again, with a 2-second call timeout and its long-running operation accepted as a write
    (no target argument: its key is the action and the alert)."""
    server = register_node_server("slow", "server-everything", args=("stdio",), timeout_s=2)
    administration.discover(server)
    tool = Tool.objects.get(name="slow__trigger-long-running-operation")
    accept_as_listed(tool, admin_user, access="write")
    return server


def test_an_external_write_that_timed_out_is_never_sent_again_a_person_checks(slow):
    """The server cannot take our key nor say whether it did it: a write with no answer is outcome_unknown,
    settled; asked again, it is not sent (one dispatched record), where a released key would send it twice."""
    approved = CallContext(correlation_id="inv-slow-1", trigger="alert-slow-1", approval="approved-1")
    first = Gateway().call("slow__trigger-long-running-operation", {"duration": 10, "steps": 1}, approved)
    again = Gateway().call("slow__trigger-long-running-operation", {"duration": 10, "steps": 1}, approved)
    assert (first["status"], first["reason"], first["retryable"]) == ("error", "outcome_unknown", False)
    assert again == first  # the settled result, replayed: nothing sent
    outcomes = list(
        AuditRecord.objects.filter(kind="tool_call", tool="slow__trigger-long-running-operation")
        .order_by("seq")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["dispatched", "error", "replayed"]


def test_check_connection_starts_an_external_server_as_a_worker_would_and_lists_its_tools(everything):
    from toolserver.supervisor import check_connection

    checked = check_connection("everything")
    assert checked["ok"] is True and "lists" in checked["detail"], checked


def test_the_launchers_check_mode_never_runs_an_external_servers_command(tmp_path):
    """Check mode runs our server's health call; for an external server it would have run the admin's command
    in the console's process (with its stdin). It refuses instead, and the command never runs."""
    touched = tmp_path / "ran"
    launch = {"transport": "stdio", "command": "touch", "args": [str(touched)], "env": {}, "cwd": ""}
    environ = {"PATH": os.environ["PATH"], "GATEHOUSE_SERVER": "probe", "GATEHOUSE_EXTERNAL": json.dumps(launch)}
    done = subprocess.run(
        [sys.executable, "-m", "toolserver.launch", "--check"],
        env=environ | {"PYTHONPATH": str(settings.BASE_DIR)},
        cwd=str(settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "no check mode" in done.stderr
    assert not touched.exists()


def test_a_write_target_must_be_a_required_argument_it_makes_the_idempotency_key(everything, admin_user):
    """An optional target could be left out of a call, and the key could not be made: refused at acceptance."""
    tool = Tool.objects.get(name="everything__trigger-long-running-operation")  # duration has a default
    with pytest.raises(administration.Refused, match="required"):
        accept_as_listed(tool, admin_user, access="write", target_args=["duration"])
    assert Tool.objects.get(pk=tool.pk).proposed is not None  # still waiting
