"""The built-in servers as any MCP client sees them: real server processes, the JSON-RPC on the wire.

What the protocol lets a server say about itself must be true: its version, the capabilities it
serves (tools only), an error code for a method it does not serve, an output schema its results
match, and hints drawn from the catalog. The official conformance suite and the inspector CLI
(conformance/package.json) run against every built-in too (make conformance installs them).
"""

import json
import os
import select
import subprocess
import sys
from importlib.metadata import version

import jsonschema
import pytest

from tests.support import ROOT, STOP_S, WAIT_S, stop_process
from toolserver.catalog import SERVERS

# Nothing listens there: these tests never reach a backend, and a call that tries fails as its typed error.
DEAD_BACKEND = "http://127.0.0.1:9"

# The built-ins over stdio and the suite over loopback HTTP: nothing here depends on the mode, so it runs
# once, in the production run (make test runs both modes side by side).
pytestmark = pytest.mark.production


def server_env(server: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "GATEHOUSE_SERVER": server,
        "GATEHOUSE_ADAPTER": "lab",
        "GATEHOUSE_BACKEND_URL": DEAD_BACKEND,
        "GATEHOUSE_BACKEND_TIMEOUT_S": "2",
        "GATEHOUSE_BACKEND_ALLOWED_HOSTS": "127.0.0.1",
    }


class Wire:
    """One server process over stdio, spoken to in raw JSON-RPC lines (no client library between)."""

    def __init__(self, server: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toolserver.servers"],
            cwd=ROOT,
            env=server_env(server),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.next_id = 0

    def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        while True:  # skip notifications: the answer is the message with this id
            message = self.receive()
            if message.get("id") == self.next_id:
                return message

    def send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self) -> dict:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], WAIT_S)
        assert ready, "the server did not answer"
        line = self.process.stdout.readline()
        assert line, f"the server exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
        return json.loads(line)

    def initialize(self) -> dict:
        answer = self.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer["result"]

    def stderr(self) -> str:
        stop_process(self.process)
        assert self.process.stderr is not None
        return self.process.stderr.read().decode()


@pytest.fixture
def wire():
    opened: list[Wire] = []

    def open_wire(server: str) -> Wire:
        opened.append(Wire(server))
        return opened[-1]

    yield open_wire
    for each in opened:
        stop_process(each.process)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_server_names_itself_with_gatehouses_version_and_serves_tools_only(wire, server):
    result = wire(server).initialize()
    assert result["serverInfo"]["name"] == f"gatehouse-{server}"
    assert result["serverInfo"]["version"] == version("gatehouse") != ""
    # No resources or prompts capability: nothing is behind them.
    assert set(result["capabilities"]) == {"tools"}, result["capabilities"]


@pytest.mark.parametrize(
    "method, params",
    [
        ("prompts/get", {"name": "no-such-prompt"}),
        ("prompts/list", {}),
        ("resources/read", {"uri": "file:///etc/passwd"}),
        ("resources/list", {}),
        ("resources/templates/list", {}),
    ],
)
def test_a_method_it_does_not_serve_is_method_not_found_without_a_trace(wire, method, params):
    server = wire("intel")
    server.initialize()
    answer = server.request(method, params)
    assert "result" not in answer
    assert answer["error"]["code"] == -32601, answer
    assert "Traceback" not in json.dumps(answer)
    assert "Traceback" not in server.stderr()


def test_an_unknown_tool_is_invalid_params_without_a_trace(wire):
    server = wire("intel")
    server.initialize()
    answer = server.request("tools/call", {"name": "no_such_tool", "arguments": {}})
    assert answer["error"]["code"] == -32602, answer
    assert "no_such_tool" in answer["error"]["message"]
    assert "Traceback" not in json.dumps(answer) and "Traceback" not in server.stderr()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_each_tool_says_what_it_returns_and_its_hints_come_from_the_catalog(wire, server):
    listed = {tool["name"]: tool for tool in _tools(wire(server))}
    for spec in SERVERS[server].tools:
        tool = listed[spec.name]
        schema = tool["outputSchema"]
        assert schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(schema)
        hints = tool["annotations"]
        assert hints["readOnlyHint"] is (not spec.write)
        # Only a write that changes or removes state is destructive; opening a ticket only adds.
        assert hints["destructiveHint"] is spec.destructive
        assert not (spec.destructive and not spec.write)


def test_the_additive_writes_are_not_destructive_and_containment_is():
    hints = {tool.name: tool.destructive for spec in SERVERS.values() for tool in spec.tools if tool.write}
    assert hints == {
        "isolate_host": True,
        "release_host": True,
        "disable_account": True,
        "enable_account": True,
        "open_ticket": False,
        "add_comment": False,
    }


ENVELOPES = [
    {"status": "ok", "data": [{"a": 1}], "truncated": True, "source": "lab:siem"},
    {"status": "ok", "data": {"check": "not_done"}, "truncated": False, "source": "lab:edr"},
    {"status": "error", "reason": "siem_timeout", "retryable": True, "guidance": "Retry once."},
    {"status": "error", "reason": "siem_rate_limited", "retryable": True, "guidance": "Wait.", "retry_after_s": 7},
]
NOT_ENVELOPES = [
    {"status": "ok", "data": []},  # no truncated, no source
    {"status": "error", "reason": "x", "retryable": "yes", "guidance": "g"},
    {"status": "error", "reason": "x", "retryable": False, "guidance": "g", "traceback": "..."},
    {"status": "maybe", "data": [], "truncated": False, "source": "lab:siem"},
    {"status": "ok", "data": "a bare string", "truncated": False, "source": "lab:siem"},
    [],
]


def test_the_output_schema_is_the_envelope_and_nothing_else(wire):
    schema = _tools(wire("siem"))[0]["outputSchema"]
    for body in ENVELOPES:
        jsonschema.validate(body, schema)
    for body in NOT_ENVELOPES:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, schema)


@pytest.mark.parametrize(
    "server, tool, arguments",
    [
        ("intel", "lookup_indicator", {"kind": "ip", "value": "1.1.1.1"}),  # the backend is down
        ("intel", "lookup_indicator", {"kind": "ip"}),  # invalid arguments
        ("ticketing", "open_ticket", {"title": "t", "body": "b", "severity": "high"}),  # a write without its key
    ],
)
def test_a_result_matches_the_schema_its_tool_advertises(wire, server, tool, arguments):
    process = wire(server)
    schema = {each["name"]: each for each in _tools(process)}[tool]["outputSchema"]
    answer = process.request("tools/call", {"name": tool, "arguments": arguments})["result"]
    body = answer["structuredContent"]
    jsonschema.validate(body, schema)
    assert json.loads(answer["content"][0]["text"]) == body
    assert answer["isError"] is True


def _tools(server: Wire) -> list[dict]:
    server.initialize()
    return server.request("tools/list")["result"]["tools"]


# -- the official conformance suite and the inspector CLI -----------------------------------------
NODE_MODULES = ROOT / "conformance" / "node_modules"


@pytest.fixture(scope="module")
def npm_tools():
    if not (NODE_MODULES / ".package-lock.json").exists():
        pytest.fail("the conformance tools are not installed: run `make conformance-tools`")
    return NODE_MODULES


# What each server answers itself; the transport's scenarios are mcp's Streamable HTTP, the same for every
# server (and not how Gatehouse runs them: over stdio), so they run against one.
PROTOCOL_SCENARIOS = "server-initialize ping tools-list"
TRANSPORT_SCENARIOS = "server-sse-multiple-streams dns-rebinding-protection"


@pytest.mark.parametrize(
    "server, scenarios",
    [(server, PROTOCOL_SCENARIOS) for server in sorted(SERVERS)] + [("intel", TRANSPORT_SCENARIOS)],
)
def test_the_official_conformance_suite_passes(npm_tools, server, scenarios, tmp_path):
    """The suite speaks Streamable HTTP only: the same build_server() is served on loopback for it."""
    http = subprocess.Popen(
        [sys.executable, str(ROOT / "conformance" / "serve_http.py")],
        cwd=ROOT,
        env=server_env(server),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert http.stdout is not None
        ready, _, _ = select.select([http.stdout], [], [], WAIT_S)
        assert ready, "the HTTP server did not start"
        url = http.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        run = subprocess.run(
            [str(ROOT / "conformance" / "run.sh"), url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT_S * 2,
            env={**os.environ, "CONFORMANCE_SCENARIOS": scenarios},
        )
    finally:
        stop_process(http)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("SUCCESS") >= len(scenarios.split()) and "FAILURE" not in run.stdout


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_the_inspector_cli_lists_the_tools_over_stdio(npm_tools, server, tmp_path):
    env_args = [arg for key, value in server_env(server).items() for arg in ("-e", f"{key}={value}")]
    run = subprocess.run(
        [
            "node",
            str(npm_tools / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"),
            "--cli",
            "--strict",
            "--format=json",
            "--method=tools/list",
            "--cwd",
            str(ROOT),
            *env_args,
            sys.executable,
            "-m",
            "toolserver.servers",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S + STOP_S,
        env={**os.environ, "HOME": str(tmp_path)},  # its ~/.mcp-inspector: this test's own
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Issue:" not in run.stderr, run.stderr  # --strict: no schema portability problem, not even a warning
    listed = {tool["name"] for tool in json.loads(run.stdout)["result"]["tools"]}
    assert listed == {tool.name for tool in SERVERS[server].tools}
