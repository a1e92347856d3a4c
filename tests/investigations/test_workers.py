"""Investigations run by real worker processes: an alert posted to the API ends in a saved
verdict, and a worker killed mid-investigation is replaced without repeating completed calls."""

import json
import os
import shutil
import threading
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import httpx2 as httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from investigations.approvals import services as approvals
from investigations.intake.services import create_integration, receive_alert
from investigations.models import ActionRequest, AuditRecord, Event, Investigation
from investigations.tokens import create_api_token
from tests.investigations.workers import WorkerProcess, worker_env
from tests.support import WAIT_S, ConsoleProcess, story_alert, wait_until
from toolserver.catalog import SERVERS
from toolserver.lab import estate, faults
from toolserver.lab.models import LabFault, LabWrite
from toolserver.models import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(lab, tmp_path, settings_offline):
    if settings.PRODUCTION:  # tasks left by other tests' in-process runs are not this test's business
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    # The lab's slow fault must outlast nothing but the kill: no backend timeout in between.
    process = WorkerProcess(
        worker_env(lab, GATEHOUSE_BACKEND_TIMEOUT_S="60", GATEHOUSE_WRITE_LEASE_S="3"), tmp_path
    ).start()
    yield process
    process.stop()


@pytest.fixture
def worker_without_beat(lab, tmp_path, settings_offline):
    """A production worker and no beat at all: the recovery must come from the workers themselves."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    process = WorkerProcess(
        worker_env(lab, GATEHOUSE_BACKEND_TIMEOUT_S="60", GATEHOUSE_WRITE_LEASE_S="3"), tmp_path, beat=False
    ).start()
    yield process
    process.stop()


def finished(investigation_id: int) -> Investigation | None:
    investigation = Investigation.objects.get(pk=investigation_id)
    return investigation if investigation.finished else None


def waiting(investigation_id: int) -> Investigation | None:
    investigation = Investigation.objects.get(pk=investigation_id)
    return investigation if investigation.status == "waiting" else None


def test_an_alert_posted_to_the_api_ends_in_a_saved_verdict(worker, live_console):
    _, token = create_integration("lab-siem")
    # On the embedded default the worker's broker lives in its console: post there.
    base_url = worker.console.url if worker.console else live_console.url
    alert = estate.demo_alerts()[2]  # the travelling manager: benign, no action to wait for
    response = httpx.post(
        f"{base_url}/api/alerts", json=alert, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    investigation = wait_until(lambda: finished(response.json()["investigation_id"]), timeout=120, what="the verdict")
    assert (investigation.status, investigation.verdict) == ("completed", "benign"), investigation.end_reason
    assert investigation.events.filter(kind=Event.Kind.VERDICT, data__verdict="benign").exists()
    assert AuditRecord.objects.filter(correlation_id=investigation.correlation_id, outcome="ok").count() >= 5


def tool_servers_of(pid: int, running: bytes = b"toolserver.servers") -> dict[str, int]:
    """{server: pid} of the tool server processes that process `pid` started (each one's environment names
    it); with running=b"toolserver.launch", those still in their launcher (reading their credential)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            if running not in (entry / "cmdline").read_bytes():
                continue
            environ = dict(
                item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except (FileNotFoundError, ProcessLookupError, PermissionError):  # it ended meanwhile
            continue
        found[environ[b"GATEHOUSE_SERVER"].decode()] = int(entry.name)
    return found


def test_a_worker_starts_its_tool_servers_before_its_first_investigation_which_uses_them(worker, live_console):
    started = wait_until(
        lambda: (found := tool_servers_of(worker.process.pid)) and set(found) == set(SERVERS) and found,
        timeout=WAIT_S,
        what="the worker's tool servers",
    )
    assert not Investigation.objects.exists()  # nothing asked for them

    _, token = create_integration("lab-siem")
    base_url = worker.console.url if worker.console else live_console.url
    response = httpx.post(
        f"{base_url}/api/alerts", json=estate.demo_alerts()[2], headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    investigation = wait_until(lambda: finished(response.json()["investigation_id"]), timeout=120, what="the verdict")
    assert investigation.status == "completed", investigation.end_reason
    assert AuditRecord.objects.filter(correlation_id=investigation.correlation_id, outcome="ok").count() >= 5
    assert tool_servers_of(worker.process.pid) == started  # the same processes answered: none started again


def test_a_worker_is_ready_while_its_servers_still_start_and_they_come_up_unasked(lab, tmp_path, settings_offline):
    """Issue 20: the embedded default's worker (a thread of the console) did not warm its servers at all
    (Celery's WorkController sends no worker_ready); now it does, beside its work. The edr server's
    credential is a pipe nobody writes yet, so the warming waits for it: the worker (and on the embedded
    default its console) is ready meanwhile, and every server comes up once that credential can be read."""
    if settings.PRODUCTION:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    credentials = tmp_path / "credentials"
    shutil.copytree(lab.credentials_dir, credentials)
    (credentials / "edr.key").unlink()
    os.mkfifo(credentials / "edr.key", 0o600)
    env = worker_env(lab) | {"GATEHOUSE_CREDENTIALS_DIR": str(credentials)}
    worker = WorkerProcess(env, tmp_path).start()  # on the embedded default: once its console answers
    try:
        launcher = wait_until(
            lambda: tool_servers_of(worker.process.pid, b"toolserver.launch").get("edr"),
            timeout=WAIT_S,
            what="the edr server's launcher to read its credential",
        )
        if worker.console:
            assert httpx.get(f"{worker.console.url}/healthz", timeout=10).status_code == 200
        else:  # the CLI worker says so just after its worker_ready signal, which starts the warming
            wait_until(lambda: " ready." in worker.log(), timeout=WAIT_S, what="the worker to say it is ready")
        assert "tool servers warm" not in worker.log()  # the warming is still under way: nothing waited for it
        assert not Investigation.objects.exists()  # nothing asked for them

        # Written as the launcher opens it (it may not have yet): a pipe's writer waits for its reader.
        writer = threading.Thread(target=(credentials / "edr.key").write_text, args=(lab.keys["edr"],), daemon=True)
        writer.start()
        writer.join(timeout=WAIT_S)
        assert not writer.is_alive(), "the edr launcher never read its credential"
        servers = wait_until(
            lambda: (found := tool_servers_of(worker.process.pid)) and set(found) == set(SERVERS) and found,
            timeout=WAIT_S,
            what="the worker's tool servers, edr's credential read",
        )
        assert servers["edr"] == launcher  # the launcher that waited became the server
    finally:
        worker.stop()


def test_a_killed_worker_is_replaced_and_no_completed_call_is_repeated(worker):
    """The first turn's six reads run together; the worker is killed with five completed and one hanging."""
    faults.inject("edr", "slow", delay_ms=60_000, remaining=1)  # the first of the three EDR reads hangs
    investigation = receive_alert(story_alert("LAB-SIEM-1001")).investigation
    # Killed once the call hangs at the lab and the others completed (the edr server starts on its
    # first call, so the transcript shows the calls a moment before the lab has them).
    hanging = LabFault.objects.filter(backend="edr", applied=1)
    wait_until(hanging.exists, timeout=60, what="an EDR read to reach the lab")
    audit = AuditRecord.objects.filter(correlation_id=investigation.correlation_id)
    wait_until(lambda: audit.count() == 5, timeout=60, what="the turn's five other reads to complete")
    reads = {"search_logins", "get_user", "get_host", "get_process_tree", "get_network_connections", "search_events"}
    completed = set(audit.values_list("tool", flat=True))
    (in_flight,) = reads - completed
    # Each saved with its audit record, whichever completed first, and none lost to another's save.
    assert len(Investigation.objects.get(pk=investigation.pk).tool_results) == 5

    worker.kill()
    worker.start()
    investigation = wait_until(
        lambda: waiting(investigation.pk), timeout=120, what="the resumed investigation to ask for isolation"
    )

    assert investigation.action_requests.get().tool == "isolate_host"
    calls = Counter(
        (record.tool, json.dumps(record.arguments, sort_keys=True)) for record in audit.filter(actor="agent")
    )
    assert all(count == 1 for count in calls.values()), calls  # no call made twice
    assert [tool for tool, _ in calls].count(in_flight) == 1  # the one in flight was made again, once (the
    # gate's own look-up of the target, by "system", is a call of its own)
    assert (
        investigation.events.filter(kind=Event.Kind.STATUS, data__message="Resumed from the last saved step.").count()
        == 1
    )
    tool_call_ids = list(
        investigation.events.filter(kind=Event.Kind.TOOL_CALL).values_list("data__tool_use_id", flat=True)
    )
    assert len(tool_call_ids) == len(set(tool_call_ids))


def isolation_hanging_at_the_lab(analyst) -> ActionRequest:
    """The phishing story's isolation, approved, and held at the lab: its worker is mid-write."""
    investigation = receive_alert(story_alert("LAB-SIEM-1001")).investigation
    request = wait_until(
        lambda: ActionRequest.objects.filter(investigation=investigation, state="pending").first(),
        timeout=60,
        what="the isolation request",
    )
    faults.inject("edr", "slow", delay_ms=60_000, remaining=1)  # the isolation hangs at the lab
    approvals.approve(request.pk, analyst)
    wait_until(
        lambda: LabFault.objects.get(backend="edr").applied == 1, timeout=60, what="the isolation to reach the lab"
    )
    return request


def test_a_worker_killed_while_executing_an_approved_action_completes_it_exactly_once(worker, analyst):
    request = isolation_hanging_at_the_lab(analyst)
    assert ActionRequest.objects.get(pk=request.pk).state == "executing"

    worker.kill()
    worker.start()
    request = wait_until(
        lambda: ActionRequest.objects.filter(pk=request.pk, state="succeeded").first(),
        timeout=60,
        what="the isolation to complete after the restart",
    )

    assert request.outcome.startswith("WS-FIN-07 ")
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1
    assert list(request.transitions.values_list("to_state", flat=True)) == [
        "pending",
        "approved",
        "executing",
        "executing",
        "succeeded",  # executed again after the kill
    ]


@pytest.mark.production
def test_without_beat_a_restarted_worker_completes_what_a_killed_one_was_executing_once(worker_without_beat, analyst):
    """Before, only beat swept for abandoned executions; without it the task waited for Redis's
    visibility timeout (an hour). Now every worker sweeps at start and every SWEEP_INTERVAL_S."""
    worker = worker_without_beat
    request = isolation_hanging_at_the_lab(analyst)

    worker.kill()
    worker.start()
    request = wait_until(
        lambda: ActionRequest.objects.filter(pk=request.pk, state="succeeded").first(),
        timeout=60,
        what="the isolation to complete after the restart, with no beat",
    )
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1


def test_a_worker_killed_mid_write_on_a_backend_that_cannot_tell_waits_for_a_person_then_resumes(worker, analyst, lab):
    """Issue 13 item 3: the restarted worker asks the EDR whether the isolation happened; the EDR cannot
    answer, so the request waits `unconfirmed` (not sent again, the investigation still waiting) until an
    analyst confirms over the API; then the investigation resumes with the confirmed result."""
    request = isolation_hanging_at_the_lab(analyst)
    worker.kill()
    faults.inject("edr", "error_5xx", remaining=1)  # the restarted worker's question: the EDR cannot say
    worker.start()
    request = wait_until(
        lambda: ActionRequest.objects.filter(pk=request.pk, state="unconfirmed").first(),
        timeout=60,
        what="the restarted worker to find the outcome unknown",
    )
    assert not LabWrite.objects.filter(action="isolate_host", outcome="performed").exists()  # not sent again
    investigation = Investigation.objects.get(pk=request.investigation_id)
    assert investigation.status == "waiting"

    _, token = create_api_token(analyst, "tests", decide=True)
    # On the embedded default the worker's broker lives in its console: decide there.
    with nullcontext(worker.console) if worker.console else ConsoleProcess(worker_env(lab)) as console:
        response = httpx.post(
            f"{console.url}/api/actions/{request.pk}/confirm",
            json={"happened": True, "reason": "EDR console: WS-FIN-07 isolated at 10:02"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "succeeded"

        answered = investigation.events.filter(kind=Event.Kind.TOOL_RESULT, data__tool_use_id=request.tool_use_id)
        result = wait_until(
            answered.first, timeout=60, what="the resumed investigation to receive the confirmed result"
        )
        assert result.data["result"]["status"] == "ok" and result.data["result"]["data"]["confirmed_by_person"] is True
        following = wait_until(
            lambda: ActionRequest.objects.filter(
                investigation=investigation, tool="disable_account", state="pending"
            ).first(),
            timeout=60,
            what="the investigation's next request",
        )
    assert following.pk != request.pk
    assert list(request.transitions.values_list("to_state", flat=True)) == [
        "pending",
        "approved",
        "executing",
        "executing",
        "unconfirmed",
        "succeeded",
    ]


IN_FLIGHT = 50


@pytest.mark.production  # 50 in flight at once is one worker process's threads (the embedded worker runs 4)
def test_a_worker_killed_with_fifty_investigations_in_flight_is_replaced_and_all_fifty_finish_calling_nothing_twice(
    lab, tmp_path, settings_offline
):
    """One worker process holds 50 investigations at once (a thread each, a connection only while it
    writes); killed with all of them mid-way, its replacement finishes all 50, and no tool call that
    had completed is made again."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    # The servers' rate limits are a deployment's (120 calls a minute by default): 50 stories at once
    # would pass them, and a rate-limited story ends inconclusive. Here they must not differ by load.
    ToolServer.objects.update(rate_limit_calls=1_000_000)
    # Each story's second turn asks the intel backend, which answers only after the kill: none can end
    # before all 50 are mid-way, however slowly a loaded machine brings the last one there (three 1 s
    # turns did not always outlast it). The killed worker's waiting requests end with its tool servers.
    faults.inject("intel", "slow", delay_ms=300_000)
    env = worker_env(
        lab, GATEHOUSE_OFFLINE_TURN_DELAY_MS="1000", GATEHOUSE_DB_POOL_SIZE="5", GATEHOUSE_BACKEND_TIMEOUT_S="600"
    )
    worker = WorkerProcess(env, tmp_path, concurrency=IN_FLIGHT).start()
    try:
        ids = [
            receive_alert(
                story_alert("LAB-SIEM-1003").model_copy(update={"external_id": f"LAB-SIEM-1003-{n}"})
            ).investigation.pk
            for n in range(IN_FLIGHT)
        ]
        investigations = Investigation.objects.filter(pk__in=ids)
        audit = AuditRecord.objects.filter(correlation_id__in=investigations.correlation_ids(), actor="agent")

        def all_mid_way() -> bool:  # every one running, and each has made a call: all in flight at once
            running = investigations.filter(status="running").count()
            return running == IN_FLIGHT and audit.values("correlation_id").distinct().count() == IN_FLIGHT

        wait_until(all_mid_way, timeout=120, what=f"{IN_FLIGHT} investigations in flight on one worker")
        assert not investigations.filter(finished_at__isnull=False).exists()
        worker.kill()
        before = Counter(audit.values_list("correlation_id", flat=True))
        faults.clear("intel")
        worker.start()
        wait_until(
            lambda: investigations.filter(status="completed").count() == IN_FLIGHT,
            timeout=240,
            what=f"all {IN_FLIGHT} to finish after the restart",
        )
    finally:
        worker.stop()

    for investigation in investigations:
        # A call is the model's tool_use block: made again, its id is audited twice. (The same tool and
        # arguments twice may be the model's own retry of a call that failed, under a new id.)
        made = list(
            audit.filter(correlation_id=investigation.correlation_id)
            .order_by("seq")
            .values_list("tool_use_id", "tool", "outcome", "reason", "backend_status")
        )
        asked = [
            block["id"]
            for message in investigation.messages
            if message["role"] == "assistant"
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]
        assert sorted(tool_use_id for tool_use_id, *_ in made) == sorted(asked), made  # each made once, none again
        assert investigation.verdict == "benign", (investigation.end_reason, investigation.summary)
    assert sum(before.values()) >= IN_FLIGHT and len(before) == IN_FLIGHT


WORKER_APP = "gatehouse-worker-under-test"  # libpq's PGAPPNAME: the worker's connections, told apart from the lab's


def end_worker_connections() -> int:
    """What a database restart does to a worker: PostgreSQL ends each of its connections (the pooled
    idle ones too); the worker finds out on its next query. How many were ended."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [WORKER_APP]
        )
        return cursor.fetchone()[0]


def connection_ended_mid_investigation(lab, tmp_path, *, retries: int) -> Investigation:
    """The benign story on a worker whose database connections PostgreSQL ends while its first call waits
    at the lab (its answer is then saved on a dead connection), with `retries` tries after the first; as it ended."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    # One pooled connection, and no sweep nor lease renewal due meanwhile: the investigation's own next
    # query is the one that finds its connection ended (and nothing but the task's retry resumes it).
    env = worker_env(
        lab,
        GATEHOUSE_BACKEND_TIMEOUT_S="60",
        GATEHOUSE_DB_POOL_SIZE="1",
        GATEHOUSE_DB_RETRY_S="1",
        GATEHOUSE_DB_RETRIES=str(retries),
        PGAPPNAME=WORKER_APP,
    ) | {"GATEHOUSE_SWEEP_INTERVAL_S": "3600", "GATEHOUSE_INVESTIGATION_LEASE_S": "60"}
    worker = WorkerProcess(env, tmp_path, beat=False).start()
    try:
        faults.inject("identity", "slow", delay_ms=5_000, remaining=1)  # get_user, the first call, waits at the lab
        investigation = receive_alert(story_alert("LAB-SIEM-1003")).investigation
        wait_until(
            LabFault.objects.filter(backend="identity", applied=1).exists, timeout=60, what="get_user to reach the lab"
        )
        assert end_worker_connections() >= 1
        return wait_until(lambda: finished(investigation.pk), timeout=120, what="the investigation to end")
    finally:
        worker.stop()


@pytest.mark.production  # PostgreSQL ending the worker's connections, as it does when it restarts
def test_a_database_error_mid_investigation_hands_it_back_and_it_completes(lab, tmp_path, settings_offline):
    """Issue 20: an investigation whose worker lost its database connection mid-way was failed
    ("Internal error (OperationalError)"); now it is handed back and the task retried, and it resumes."""
    investigation = connection_ended_mid_investigation(lab, tmp_path, retries=5)

    assert (investigation.status, investigation.verdict) == ("completed", "benign"), investigation.end_reason
    messages = list(investigation.events.filter(kind=Event.Kind.STATUS).values_list("data__message", flat=True))
    assert "Handed back: the database did not answer (OperationalError); trying again." in messages
    assert "Resumed from the last saved step." in messages


@pytest.mark.production
def test_a_database_error_past_the_last_retry_fails_the_investigation_saying_so(lab, tmp_path, settings_offline):
    investigation = connection_ended_mid_investigation(lab, tmp_path, retries=0)

    assert investigation.status == "failed"
    assert investigation.end_reason == (
        "The database did not answer (OperationalError) and its retries are used up; see the worker log."
    )
