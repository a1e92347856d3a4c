"""The gateway end to end: one audit record per call of every kind, rate limits, supervision."""

import os
import signal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from investigations.models import AuditRecord
from tests.support import set_rate_limit
from tests.toolserver.conftest import server_pids
from toolserver.audit import keyed_hash
from toolserver.gateway import CallContext
from toolserver.lab import estate, faults
from toolserver.lab.models import LabWrite
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

ISOLATE = {"host": estate.BEACON_HOST, "reason": "Beaconing every 60 s to a C2 domain."}


def only_record():
    (record,) = AuditRecord.objects.all()
    return record


def test_a_successful_read_is_one_record_with_sensitive_values_hashed(gateway, context):
    gateway.call("search_logins", {"user": estate.PHISHED_USER, "lookback_hours": 12}, context)
    record = only_record()
    assert (record.server, record.tool, record.outcome, record.reason) == ("siem", "search_logins", "ok", "")
    assert record.arguments == {
        "user": keyed_hash(estate.PHISHED_USER),
        "host": None,
        "lookback_hours": 12,
        "limit": 50,
    }
    assert estate.PHISHED_USER not in str(record.arguments)
    assert (record.correlation_id, record.actor, record.backend_status, record.source) == (
        "inv-test-1",
        "agent",
        "200",
        "lab:siem",
    )
    assert record.latency_ms > 0 and record.idempotency_key == ""


def test_a_read_costs_its_tool_lookup_and_its_record_in_one_transaction_without_a_savepoint(gateway, context):
    """Every call the agent makes pays these statements, hundreds a second at volume: the tool's row by
    its unique name (no sort), then the record with what the caller keeps of it, one transaction."""
    kept = []
    context = CallContext(context.correlation_id, context.trigger, keep=kept.append)
    gateway.call("get_host", {"host": estate.PHISHED_HOST}, context)  # its server started, its row read
    with CaptureQueriesContext(connection) as captured:
        result = gateway.call("get_host", {"host": estate.PHISHED_HOST}, context)
    statements = [query["sql"] for query in captured.captured_queries]
    assert result["status"] == "ok" and kept[-1] == result  # kept with the record
    assert not any("SAVEPOINT" in sql for sql in statements), statements
    lookup = next(sql for sql in statements if 'FROM "toolserver_tool"' in sql)
    assert "ORDER BY" not in lookup
    assert len(statements) <= 6, statements  # lookup; BEGIN, head, record, head moved, COMMIT (SQLite: no BEGIN/COMMIT)


def test_a_manager_can_find_calls_about_a_user_by_hashing_the_name(gateway, context):
    gateway.call("get_user", {"username": estate.PHISHED_USER}, context)
    gateway.call("get_user", {"username": estate.BENIGN_USER}, context)
    touched = AuditRecord.objects.filter(arguments__username=keyed_hash("J.Doe"))
    assert touched.count() == 1


def test_a_rejected_call_is_one_record_without_unknown_keys(gateway, context):
    gateway.call("get_host", {"host": estate.PHISHED_HOST, "token": "sneaky"}, context)
    record = only_record()
    assert (record.outcome, record.reason, record.backend_status) == ("error", "invalid_arguments", "")
    assert record.arguments == {"host": estate.PHISHED_HOST}


def test_an_unknown_tool_is_one_record(gateway, context):
    result = gateway.call("format_disk", {"host": "DC-01"}, context)
    assert result["reason"] == "unknown_tool"
    assert (only_record().outcome, only_record().reason, only_record().arguments) == ("error", "unknown_tool", {})


def test_a_failed_call_is_one_record_with_the_backend_status(gateway, context):
    faults.inject("intel", "error_5xx")
    gateway.call("lookup_indicator", {"kind": "ip", "value": estate.BEACON_IP}, context)
    record = only_record()
    assert (record.outcome, record.reason, record.backend_status) == ("error", "intel_unavailable", "503")


def test_writes_record_their_key_and_a_replay(gateway, context):
    gateway.call("isolate_host", ISOLATE, context)
    gateway.call("isolate_host", ISOLATE, context)
    dispatched, first, second = AuditRecord.objects.order_by("id")
    assert first.idempotency_key and dispatched.idempotency_key == first.idempotency_key == second.idempotency_key
    assert (dispatched.outcome, first.outcome, second.outcome) == ("dispatched", "ok", "replayed")


def test_a_write_without_an_approval_never_reaches_the_backend(gateway, context):
    unapproved = CallContext(context.correlation_id, context.trigger)
    result = gateway.call("isolate_host", ISOLATE, unapproved)
    assert (result["status"], result["reason"], result["retryable"]) == ("error", "approval_required", False)
    assert not LabWrite.objects.exists()
    record = only_record()
    assert (record.tool, record.outcome, record.reason, record.idempotency_key) == (
        "isolate_host",
        "error",
        "approval_required",
        "",
    )


def test_over_the_rate_limit_the_backend_is_not_called(gateway, context):
    set_rate_limit("edr-response", 2)
    results = [
        gateway.call("isolate_host", {**ISOLATE, "host": host}, context)
        for host in (estate.BEACON_HOST, estate.PHISHED_HOST, estate.BENIGN_HOST)
    ]
    assert [result["status"] for result in results] == ["ok", "ok", "error"]
    assert results[2]["reason"] == "rate_limited" and 0 < results[2]["retry_after_s"] <= 60
    assert LabWrite.objects.count() == 2
    assert list(AuditRecord.objects.order_by("id").values_list("outcome", flat=True)) == [
        "dispatched",
        "ok",
        "dispatched",
        "ok",
        "rate_limited",
    ]


def test_a_dead_server_process_is_restarted(gateway, context):
    assert gateway.call("get_host", {"host": estate.PHISHED_HOST}, context)["status"] == "ok"
    (before,) = server_pids("edr")
    os.kill(before, signal.SIGKILL)
    results = [gateway.call("get_host", {"host": estate.PHISHED_HOST}, context) for _ in range(2)]
    # The call that finds it dead is told to retry; the next runs on a new process.
    assert results[-1]["status"] == "ok"
    assert all(r["status"] == "ok" or r["reason"] == "toolserver_unavailable" for r in results)
    (after,) = server_pids("edr")
    assert after != before


def test_a_rotated_credential_restarts_the_server_with_the_new_one(gateway, context, lab):
    from tests.toolserver.conftest import read_environ
    from toolserver.lab.keys import hash_key, revoke_key
    from toolserver.lab.models import LabKey

    assert gateway.call("lookup_indicator", {"kind": "ip", "value": estate.ATTACKER_IP}, context)["status"] == "ok"
    (before,) = server_pids("intel")
    path = lab.credentials_dir / "intel.key"
    old, new = path.read_text(), "lab_test_intel_rotated_0123456789"
    try:
        revoke_key("intel")
        LabKey.objects.create(name="intel", key_hash=hash_key(new), scopes=["intel:read"])
        replacement = path.with_suffix(".new")
        replacement.write_text(new)
        os.replace(replacement, path)

        assert gateway.call("lookup_indicator", {"kind": "ip", "value": estate.ATTACKER_IP}, context)["status"] == "ok"
        (after,) = server_pids("intel")
        assert after != before and read_environ(after)["GATEHOUSE_BACKEND_KEY"] == new
    finally:
        path.write_text(old)
    get_supervisor().list_tools("intel")


def test_a_server_that_will_not_start_answers_a_typed_error_and_says_why_in_the_log(gateway, context, settings, caplog):
    settings.TOOLSERVER_BACKENDS = {
        **settings.TOOLSERVER_BACKENDS,
        "intel": {**settings.TOOLSERVER_BACKENDS["intel"], "credential": "file:/nonexistent/intel.key"},
    }
    lookup = {"kind": "ip", "value": estate.BEACON_IP}
    results = [gateway.call("lookup_indicator", lookup, context) for _ in range(3)]
    assert {result["reason"] for result in results} == {"toolserver_unavailable"}
    attempts = [record for record in caplog.records if "tool server intel did not start" in record.getMessage()]
    assert 1 <= len(attempts) <= 3  # at most one start per caller


def test_every_kind_of_call_is_one_chained_record_naming_its_call(gateway, context, settings):
    from dataclasses import replace

    from investigations.audit import chain as audit_trail
    from toolserver.audit import result_digest

    set_rate_limit("ticketing", 1)
    faults.inject("intel", "error_5xx")
    calls = [
        ("get_host", {"host": estate.PHISHED_HOST}, context, "ok", ""),
        ("get_host", {"host": estate.PHISHED_HOST, "extra": 1}, context, "error", "invalid_arguments"),
        ("format_disk", {}, context, "error", "unknown_tool"),
        ("lookup_indicator", {"kind": "ip", "value": estate.BEACON_IP}, context, "error", "intel_unavailable"),
        ("isolate_host", ISOLATE, replace(context, approval=""), "error", "approval_required"),
        ("isolate_host", ISOLATE, context, "ok", ""),
        ("isolate_host", ISOLATE, context, "replayed", ""),
        (
            "open_ticket",
            {"title": "Phishing at finance", "severity": "high", "body": "Findings so far."},
            context,
            "ok",
            "",
        ),
        (
            "open_ticket",
            {"title": "Phishing at finance 2", "severity": "high", "body": "Findings so far."},
            context,
            "rate_limited",
            "rate_limited",
        ),
    ]
    results = []
    for n, (tool, arguments, call_context, _, _) in enumerate(calls):
        results.append(gateway.call(tool, arguments, replace(call_context, tool_use_id=f"toolu_kind{n:04d}")))
    everything = list(AuditRecord.objects.order_by("seq"))
    # A write that leaves for its backend is recorded before it leaves, too (#6 and #9 here).
    assert [(r.seq, r.outcome, r.tool_use_id) for r in everything if r.outcome == "dispatched"] == [
        (6, "dispatched", "toolu_kind0005"),
        (9, "dispatched", "toolu_kind0007"),
    ]
    records = [r for r in everything if r.outcome != "dispatched"]
    assert [(r.tool_use_id, r.outcome, r.reason) for r in records] == [
        (f"toolu_kind{n:04d}", outcome, reason) for n, (_, _, _, outcome, reason) in enumerate(calls)
    ]
    assert [r.seq for r in everything] == list(range(1, len(calls) + 3))
    assert all(r.kind == "tool_call" and r.correlation_id == "inv-test-1" and r.actor == "agent" for r in records)
    assert [r.extra["result_sha256"] for r in records] == [result_digest(result) for result in results]
    assert records[5].idempotency_key and records[5].idempotency_key == records[6].idempotency_key
    assert audit_trail.verify_database() == (len(calls) + 2, None)
