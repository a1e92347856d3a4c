import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from toolserver.lab import faults
from toolserver.lab.keys import issue_key
from toolserver.lab.models import LabFault, LabWrite

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."


def test_error_5xx(estate, lab):
    faults.inject("siem", "error_5xx")
    response = lab.get("siem/logins", "siem")
    assert response.status_code == 503 and response.json() == {"error": "unavailable"}


def test_rate_limit_says_when_to_retry(estate, lab):
    faults.inject("intel", "rate_limit", retry_after_s=7)
    response = lab.get("intel/lookup", "intel", kind="ip", value=estate.ATTACKER_IP)
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert response.json()["error"] == "rate_limited"


def test_rate_limit_has_a_default_retry_after(estate, lab):
    faults.inject("intel", "rate_limit")
    assert lab.get("intel/lookup", "intel", kind="ip", value="1.1.1.1")["Retry-After"] == str(
        faults.DEFAULT_RETRY_AFTER_S
    )


def test_timeout_hangs_for_the_delay_then_504(estate, lab):
    faults.inject("edr", "timeout", delay_ms=20)
    response = lab.get("edr/hosts/H-1042", "edr")
    assert response.status_code == 504 and response.json() == {"error": "timeout"}


def test_timeout_defaults_to_thirty_seconds(db):
    assert faults.inject("edr", "timeout").delay_ms == 30_000


def test_slow_answers_correctly_after_the_delay(estate, lab):
    healthy = lab.get("edr/hosts/H-1042", "edr").json()
    faults.inject("edr", "slow", delay_ms=20)
    response = lab.get("edr/hosts/H-1042", "edr")
    assert response.status_code == 200 and response.json() == healthy


def test_malformed_answers_200_with_a_body_of_the_wrong_shape(estate, lab):
    faults.inject("siem", "malformed")
    truncated = lab.get("siem/logins", "siem")
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)
    wrong_shape = lab.get("siem/logins", "siem")
    assert wrong_shape.status_code == 200
    body = json.loads(wrong_shape.content)
    assert "items" not in body and "unexpected" in body


def test_a_fault_applies_to_its_backend_only(estate, lab):
    faults.inject("siem", "error_5xx")
    assert lab.get("siem/events", "siem").status_code == 503
    assert lab.get("edr/hosts/H-1042", "edr").status_code == 200
    assert lab.get("identity/users/j.doe", "identity").status_code == 200


def test_health_is_subject_to_no_fault(estate, lab):
    for backend in faults.BACKENDS:
        faults.inject(backend, "error_5xx")
    assert lab.get("health", "siem").status_code == 200


def test_faults_apply_after_the_key_and_scope_checks(estate, lab):
    faults.inject("edr", "error_5xx", remaining=1)
    assert lab.get("edr/hosts/H-1042", token="lab_wrong").status_code == 401
    assert lab.get("edr/hosts/H-1042", "siem").status_code == 403
    assert LabFault.objects.get(backend="edr").remaining == 1  # refusals did not use it up
    assert lab.get("edr/hosts/H-1042", "edr").status_code == 503


def test_remaining_clears_the_fault_after_that_many_requests(estate, lab):
    faults.inject("identity", "error_5xx", remaining=2)
    statuses = [lab.get("identity/users/j.doe", "identity").status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    fault = LabFault.objects.get(backend="identity")
    assert fault.mode == "none" and fault.remaining is None and fault.applied == 2


def test_clear_one_or_every_backend(estate, lab):
    for backend in faults.BACKENDS:
        faults.inject(backend, "error_5xx")
    faults.clear("siem")
    assert lab.get("siem/logins", "siem").status_code == 200
    assert lab.get("edr/hosts/H-1042", "edr").status_code == 503
    faults.clear()
    assert lab.get("edr/hosts/H-1042", "edr").status_code == 200
    assert {fault.mode for fault in faults.current().values()} == {"none"}


@pytest.mark.parametrize(
    "args, kwargs, refusal",
    [
        (("mainframe", "error_5xx"), {}, "unknown backend"),
        (("siem", "explode"), {}, "unknown fault mode"),
        (("siem", "error_5xx"), {"remaining": 0}, "remaining must be at least 1"),
        (("siem", "timeout"), {"delay_ms": -1}, "delay_ms must be between"),
        (("siem", "rate_limit"), {"retry_after_s": 0}, "retry_after_s must be between"),
    ],
)
def test_inject_refuses_what_it_cannot_do(db, args, kwargs, refusal):
    with pytest.raises(ValueError, match=refusal):
        faults.inject(*args, **kwargs)


def test_a_faulted_write_is_recorded_and_changes_nothing(estate, lab):
    faults.inject("edr", "rate_limit", remaining=1)
    response = lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="iso-1")
    assert response.status_code == 429
    write = LabWrite.objects.get()
    assert (write.outcome, write.status, write.action, write.target) == ("fault", 429, "isolate_host", "H-1042")
    assert lab.get("edr/hosts/H-1042", "edr").json()["isolated"] is False
    # The retry under the same key is not a replay of the fault: it does the work.
    retried = lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="iso-1")
    assert retried.status_code == 200 and retried.json()["already_isolated"] is False
    assert LabWrite.objects.filter(outcome="performed").count() == 1


@pytest.mark.parametrize("mode", ["timeout", "error_5xx", "malformed"])
def test_every_refusing_fault_is_logged_for_writes(estate, lab, mode):
    faults.inject("ticketing", mode, delay_ms=10)
    lab.post("tickets", "ticketing", {"title": "T", "body": "B", "severity": "low"})
    assert LabWrite.objects.get().outcome == "fault"
    assert not LabWrite.objects.filter(outcome="performed").exists()


@pytest.fixture
async def thread_connections_closed():
    """The async client's database work runs in asgiref's worker thread: close what it opened there."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_timeout_does_not_hold_up_other_requests(async_client, thread_connections_closed):
    key = await sync_to_async(issue_key)("all", ["edr:read", "intel:read"])
    headers = {"Authorization": f"Bearer {key}"}
    await sync_to_async(faults.inject)("edr", "timeout", delay_ms=60_000)

    hung = asyncio.create_task(async_client.get("/lab/api/edr/hosts/H-1042", headers=headers))
    answered = await async_client.get("/lab/api/intel/lookup", {"kind": "ip", "value": "192.0.2.1"}, headers=headers)
    assert answered.status_code == 200
    assert not hung.done()  # still hanging, a minute from its answer
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung


@pytest.mark.django_db(transaction=True)
async def test_timeout_answers_504_to_the_async_client(async_client, thread_connections_closed):
    key = await sync_to_async(issue_key)("edr", ["edr:read"])
    await sync_to_async(faults.inject)("edr", "timeout", delay_ms=10)
    response = await async_client.get("/lab/api/edr/hosts/H-1042", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 504
