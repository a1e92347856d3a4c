"""A server on its own boundary (in memory): envelope, typed errors, no raw payloads or traces.

The backend here is a stand-in for an external system, so each failure can be raised on cue;
the same paths run over stdio against the lab in test_servers_stdio.py.
"""

import base64

import pytest
from mcp import Client

from toolserver.adapters.base import (
    BackendError,
    BackendRefused,
    IntelBackend,
    TargetNotFound,
)
from toolserver.catalog import SERVERS
from toolserver.envelope import BackendFailure
from toolserver.servers import META_BACKEND_STATUS, build_server

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SECRET = "sk-test-never-shown-0123456789"


class ScriptedIntel(IntelBackend):
    source = "scripted:intel"

    async def health(self):
        return "scripted"

    async def lookup_indicator(self, args):
        behaviour = {
            "10.0.0.1": BackendError(BackendFailure.TIMEOUT),
            "10.0.0.2": BackendError(BackendFailure.UNAVAILABLE, status=503),
            "10.0.0.3": BackendError(BackendFailure.RATE_LIMITED, status=429, retry_after_s=7),
            "10.0.0.4": BackendError(BackendFailure.FORBIDDEN, status=403),
            "10.0.0.5": BackendError(BackendFailure.MALFORMED),
            "10.0.0.6": TargetNotFound(args.value),
            "10.0.0.7": BackendRefused("value out of range"),
            "10.0.0.8": RuntimeError(f"connection to http://intel?key={SECRET} failed"),
            "10.0.0.9": BackendRefused(f"bad key {SECRET} (base64 {base64.b64encode(SECRET.encode()).decode()})"),
        }.get(args.value)
        if behaviour:
            raise behaviour
        return {"kind": args.kind, "value": args.value, "verdict": "benign"}


@pytest.fixture
def intel():
    # The mcp client must be entered and left in one task: each test opens it itself.
    return build_server(SERVERS["intel"], ScriptedIntel(url="http://intel", credential=SECRET, timeout_s=1))


async def call(server, arguments):
    async with Client(server) as client:
        return await client.call_tool("lookup_indicator", arguments)


async def lookup(server, value):
    result = await call(server, {"kind": "ip", "value": value})
    return result, result.structured_content


async def test_success_comes_in_the_envelope(intel):
    result, body = await lookup(intel, "8.8.8.8")
    assert result.is_error is False
    assert body == {
        "status": "ok",
        "data": {"kind": "ip", "value": "8.8.8.8", "verdict": "benign"},
        "truncated": False,
        "source": "scripted:intel",
    }
    assert result.meta[META_BACKEND_STATUS] == "200"


@pytest.mark.parametrize(
    "value, reason, retryable",
    [
        ("10.0.0.1", "intel_timeout", True),
        ("10.0.0.2", "intel_unavailable", True),
        ("10.0.0.3", "intel_rate_limited", True),
        ("10.0.0.4", "intel_forbidden", False),
        ("10.0.0.5", "intel_malformed_response", False),
        ("10.0.0.6", "not_found", False),
        ("10.0.0.7", "invalid_arguments", False),
        ("10.0.0.8", "internal_error", False),
    ],
)
async def test_each_failure_is_a_typed_error(intel, value, reason, retryable):
    result, body = await lookup(intel, value)
    assert result.is_error is True
    assert set(body) >= {"status", "reason", "retryable", "guidance"}
    assert (body["status"], body["reason"], body["retryable"]) == ("error", reason, retryable)
    assert body["guidance"]
    text = result.content[0].text
    assert SECRET not in text and "Traceback" not in text


async def test_a_refusal_quoting_the_credential_reaches_the_model_without_any_form_of_it(intel):
    result, body = await lookup(intel, "10.0.0.9")
    assert body["reason"] == "invalid_arguments" and body["guidance"].count("[redacted credential]") == 2
    for text in (result.content[0].text, str(body)):
        assert SECRET not in text and base64.b64encode(SECRET.encode()).decode() not in text


class VendorIntel(ScriptedIntel):
    vendor = "taxii"


@pytest.mark.parametrize(
    "value, reason", [("10.0.0.1", "taxii_timeout"), ("10.0.0.2", "taxii_unavailable"), ("10.0.0.4", "taxii_forbidden")]
)
async def test_an_adapter_that_names_its_system_names_the_failure_after_it(value, reason):
    server = build_server(SERVERS["intel"], VendorIntel(url="http://intel", credential=SECRET, timeout_s=1))
    _, body = await lookup(server, value)
    assert body["reason"] == reason
    assert "threat-intel service" in body["guidance"]


async def test_backend_rate_limit_passes_on_its_wait(intel):
    _, body = await lookup(intel, "10.0.0.3")
    assert body["retry_after_s"] == 7


@pytest.mark.parametrize(
    "arguments, field",
    [
        ({"kind": "ip", "value": "8.8.8.8", "extra": 1}, "extra"),
        ({"kind": "url", "value": "8.8.8.8"}, "kind"),
        ({"kind": "ip", "value": 8}, "value"),
        ({"kind": "ip"}, "value"),
    ],
)
async def test_malformed_arguments_never_reach_the_backend(intel, arguments, field):
    result = await call(intel, arguments)
    body = result.structured_content
    assert (body["status"], body["reason"], body["retryable"]) == ("error", "invalid_arguments", False)
    assert field in body["guidance"]
    assert result.meta[META_BACKEND_STATUS] == ""


async def test_writes_refuse_calls_without_an_idempotency_key():
    from toolserver.adapters.base import EdrResponseBackend

    class Recording(EdrResponseBackend):
        source = "scripted:edr"
        calls = 0

        async def isolate_host(self, args, write):
            Recording.calls += 1
            return {}

        async def release_host(self, args, write):
            return {}

        async def health(self):
            return "scripted"

    server = build_server(SERVERS["edr-response"], Recording(url="http://edr", credential=SECRET, timeout_s=1))
    async with Client(server) as client:
        result = await client.call_tool("isolate_host", {"host": "WS-FIN-07", "reason": "beaconing to a C2 domain"})
    assert result.structured_content["reason"] == "invalid_arguments"
    assert Recording.calls == 0
