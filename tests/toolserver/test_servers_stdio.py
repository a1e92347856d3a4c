"""Each server over a real stdio process, against the lab: valid calls, malformed calls, every
injected backend fault, and duplicate writes."""

import jsonschema
import pytest

from toolserver.envelope import OUTPUT_SCHEMA
from toolserver.lab import estate, faults
from toolserver.lab.models import LabWrite, Ticket
from toolserver.models import IdempotencyRecord
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

VALID_READS = [
    ("siem", "search_logins", {"user": estate.PHISHED_USER, "lookback_hours": 24}),
    ("siem", "search_events", {"host": estate.PHISHED_HOST, "lookback_hours": 24, "limit": 20}),
    ("edr", "get_host", {"host": estate.PHISHED_HOST}),
    ("edr", "get_process_tree", {"host": estate.PHISHED_HOST, "lookback_hours": 24}),
    ("edr", "get_network_connections", {"host": estate.BEACON_HOST, "lookback_hours": 24, "limit": 10}),
    ("identity", "get_user", {"username": estate.PHISHED_USER}),
    ("intel", "lookup_indicator", {"kind": "ip", "value": estate.ATTACKER_IP}),
]

# One call per server that its backend answers: used to inject each fault into each backend.
PROBES = {
    "siem": ("search_logins", {"user": estate.PHISHED_USER}),
    "edr": ("get_host", {"host": estate.PHISHED_HOST}),
    "edr-response": ("isolate_host", {"host": estate.BEACON_HOST, "reason": "Beaconing every 60 s to a C2 domain."}),
    "identity": ("get_user", {"username": estate.PHISHED_USER}),
    "ticketing": (
        "open_ticket",
        {"title": "Beaconing on SRV-APP-03", "body": "Cobalt Strike beacon.", "severity": "high"},
    ),
    "intel": ("lookup_indicator", {"kind": "domain", "value": estate.BEACON_DOMAIN}),
}
BACKEND_OF = {
    "siem": "siem",
    "edr": "edr",
    "edr-response": "edr",
    "identity": "identity",
    "ticketing": "ticketing",
    "intel": "intel",
}


def test_every_server_advertises_its_tools_over_stdio(lab):
    from toolserver.catalog import SERVERS

    for server, spec in SERVERS.items():
        listed = {tool["name"]: tool for tool in get_supervisor().list_tools(server)}
        assert set(listed) == {tool.name for tool in spec.tools}, server
        for tool in spec.tools:
            assert listed[tool.name]["input_schema"]["additionalProperties"] is False
            assert listed[tool.name]["description"] == tool.description


@pytest.mark.parametrize("server, tool, arguments", VALID_READS)
def test_valid_reads_return_the_envelope(gateway, context, server, tool, arguments):
    result = gateway.call(tool, arguments, context)
    assert result["status"] == "ok", result
    assert set(result) == {"status", "data", "truncated", "source"}
    assert result["source"].startswith("lab:")
    assert result["data"]
    jsonschema.validate(result, OUTPUT_SCHEMA)  # what each tool's outputSchema promises


def test_the_stories_are_visible_through_the_tools(gateway, context):
    logins = gateway.call("search_logins", {"user": estate.PHISHED_USER, "limit": 200}, context)["data"]
    assert any(login["source_ip"] == estate.ATTACKER_IP and login["result"] == "success" for login in logins)
    verdict = gateway.call("lookup_indicator", {"kind": "ip", "value": estate.ATTACKER_IP}, context)["data"]["verdict"]
    assert verdict == "malicious"
    host = gateway.call("get_host", {"host": estate.DOMAIN_CONTROLLER}, context)["data"]
    assert host["role"] == "domain_controller"


def test_a_capped_result_says_it_was_truncated(gateway, context):
    result = gateway.call(
        "get_network_connections", {"host": estate.BEACON_HOST, "lookback_hours": 24, "limit": 5}, context
    )
    assert len(result["data"]) == 5 and result["truncated"] is True


@pytest.mark.parametrize(
    "tool, arguments",
    [
        ("get_host", {"host": "WS-NOPE-99"}),
        ("get_process_tree", {"host": "WS-NOPE-99"}),
        ("isolate_host", {"host": "WS-NOPE-99", "reason": "Testing an unknown host is refused."}),
    ],
)
def test_an_unknown_target_is_a_typed_error_naming_it(gateway, context, tool, arguments):
    result = gateway.call(tool, arguments, context)
    assert (result["status"], result["reason"], result["retryable"]) == ("error", "not_found", False)
    assert "'WS-NOPE-99'" in result["guidance"]


@pytest.mark.parametrize(
    "tool, arguments, field",
    [
        ("search_logins", {"user": "j.doe", "password": "x"}, "password"),  # unknown key
        ("search_events", {"host": "WS-FIN-07", "kind": "all"}, "kind"),  # bad enum
        ("get_process_tree", {"host": "WS-FIN-07", "limit": 5000}, "limit"),  # over maximum
        ("get_network_connections", {"host": "WS-FIN-07", "lookback_hours": 9999}, "lookback_hours"),
        ("get_user", {"username": 42}, "username"),  # wrong type
        ("lookup_indicator", {"kind": "hash", "value": "zzz"}, "value"),
        ("isolate_host", {"host": "WS-FIN-07"}, "reason"),  # missing
        ("open_ticket", {"title": "x", "body": "y", "severity": "high", "assignee": "me"}, "assignee"),
    ],
)
def test_malformed_arguments_are_typed_errors_and_never_reach_the_backend(gateway, context, tool, arguments, field):
    result = gateway.call(tool, arguments, context)
    assert (result["status"], result["reason"], result["retryable"]) == ("error", "invalid_arguments", False)
    assert field in result["guidance"]
    assert not LabWrite.objects.exists()


def test_a_server_refuses_malformed_arguments_on_its_own_boundary(lab):
    """Past the gateway too: the server process validates what reaches it."""
    envelope, status = get_supervisor().call(
        "intel", "lookup_indicator", {"kind": "ip", "value": "1.1.1.1", "x": 1}, {}
    )
    assert envelope["reason"] == "invalid_arguments" and status == ""


@pytest.mark.parametrize("server", sorted(PROBES))
@pytest.mark.parametrize(
    "mode, failure, retryable",
    [
        ("timeout", "timeout", True),
        ("error_5xx", "unavailable", True),
        ("rate_limit", "rate_limited", True),
        ("malformed", "malformed_response", False),
    ],
)
def test_each_backend_fault_is_its_typed_error(gateway, context, server, mode, failure, retryable):
    backend = BACKEND_OF[server]
    faults.inject(backend, mode, delay_ms=5000, retry_after_s=17)
    tool, arguments = PROBES[server]
    result = gateway.call(tool, arguments, context)
    assert result["status"] == "error"
    assert result["reason"] == f"{backend}_{failure}"
    assert result["retryable"] is retryable
    assert "not evidence" in result["guidance"] or "could not be" in result["guidance"]
    jsonschema.validate(result, OUTPUT_SCHEMA)
    if mode == "rate_limit":
        assert result["retry_after_s"] == 17


@pytest.mark.parametrize("server", sorted(PROBES))
def test_a_slow_backend_still_answers(gateway, context, server):
    faults.inject(BACKEND_OF[server], "slow", delay_ms=300)
    tool, arguments = PROBES[server]
    assert gateway.call(tool, arguments, context)["status"] == "ok"


def test_a_backend_key_without_the_scope_is_forbidden(gateway, context, lab):
    from toolserver.lab.keys import hash_key
    from toolserver.lab.models import LabKey

    LabKey.objects.filter(key_hash=hash_key(lab.keys["intel"])).update(scopes=["siem:read"])
    result = gateway.call("lookup_indicator", {"kind": "ip", "value": estate.ATTACKER_IP}, context)
    assert (result["reason"], result["retryable"]) == ("intel_forbidden", False)


def test_duplicate_writes_are_deduplicated(gateway, context):
    isolate = {"host": estate.PHISHED_HOST, "reason": "Macro-launched PowerShell fetched a known loader."}
    first = gateway.call("isolate_host", isolate, context)
    again = gateway.call("isolate_host", {**isolate, "reason": "Asked again, in other words this time."}, context)
    assert first["status"] == "ok" and first["data"]["isolated"] is True
    assert again["data"]["replayed"] is True
    assert again["data"]["action_id"] == first["data"]["action_id"]
    assert LabWrite.objects.filter(action="isolate_host").count() == 1

    ticket = {"title": "Phishing on WS-FIN-07", "body": "Findings so far.", "severity": "high"}
    opened = gateway.call("open_ticket", ticket, context)
    other = gateway.call("open_ticket", {**ticket, "severity": "low"}, context)
    assert opened["status"] == "ok"
    assert other["reason"] == "idempotency_conflict" and opened["data"]["ticket_id"] in other["guidance"]
    assert LabWrite.objects.filter(action="open_ticket").count() == 1


def test_a_transient_write_failure_releases_the_key_for_a_retry(gateway, context):
    isolate = {"host": estate.BEACON_HOST, "reason": "Beaconing every 60 s to a C2 domain."}
    faults.inject("edr", "error_5xx", remaining=1)
    assert gateway.call("isolate_host", isolate, context)["reason"] == "edr_unavailable"
    retried = gateway.call("isolate_host", isolate, context)
    assert retried["status"] == "ok" and "replayed" not in retried["data"]
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1


def test_a_permanent_write_failure_is_stored_and_returned_again(gateway, context):
    comment = {"ticket_id": "999999", "body": "Nothing here"}
    first = gateway.call("add_comment", comment, context)
    assert first["reason"] == "not_found"
    assert gateway.call("add_comment", comment, context) == first
    assert LabWrite.objects.filter(action="add_comment").count() == 1


def test_a_ticket_asked_again_in_other_words_after_a_failed_try_is_opened_once_not_refused(gateway, context):
    """The first open_ticket failed with a 5xx (refused before anything was opened) and its key was given up,
    for the next try to ask the ticketing system first. Asked again with its title worded otherwise, it was
    refused as a conflict with the first, "still running", and never opened: nothing of the first stands,
    so the next try takes the key over, finds no ticket, and opens it with its own words."""
    ticket = {"title": "Phishing on WS-FIN-07", "body": "Findings so far.", "severity": "high"}
    faults.inject("ticketing", "error_5xx", remaining=1)
    first = gateway.call("open_ticket", ticket, context)
    assert (first["reason"], first["retryable"]) == ("ticketing_unavailable", True)
    assert not Ticket.objects.exists()  # refused before it acted

    again = gateway.call("open_ticket", {**ticket, "title": "Phishing reported on WS-FIN-07"}, context)

    assert again["status"] == "ok", again
    assert list(Ticket.objects.values_list("title", flat=True)) == ["Phishing reported on WS-FIN-07"]
    assert IdempotencyRecord.objects.get().state == "succeeded"
    assert list(LabWrite.objects.filter(action="open_ticket").order_by("pk").values_list("outcome", flat=True)) == [
        "fault",
        "performed",
    ]
