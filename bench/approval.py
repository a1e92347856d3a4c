"""Latency of the human gate: an analyst's approve POST to the backend write, and to the agent's next step.

Path measured: POST /api/actions/<id>/approve (console, token auth) -> commit -> execute_action on
Redis -> worker: actions.execute -> gateway (rate limit, idempotency claim) -> stdio to the
edr-response tool server -> lab HTTP API (isolate_host) -> request succeeded -> services.resume ->
run_investigation on Redis -> worker: the agent resumes and records the write's result.
Baseline: a bare Celery round trip of the built-in no-op task `celery.accumulate` (send, the same
worker runs it, result through the Redis result backend, .get()), same run, after each approval.
Each approval is of its own alert (a distinct LAB-SIEM-1001), so its own idempotency key reaches the
lab; the bench keeps to the tool servers' rate limits (a limited call never reaches the lab).

    .venv/bin/python bench/approval.py [--approvals 30]

Production mode only: PostgreSQL database gatehouse_bench (created and migrated if missing, kept
as a bench database; the lab is re-seeded) and Redis db 13 (flushed when done). Starts the console
(`manage.py serve`) and one `celery -A console worker --pool=threads -c 4 -B`; logs in var/.
"""

import argparse
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import ConsoleProcess, console_env, wait_until  # noqa: E402  (no Django imports)

os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/gatehouse_bench",
    REDIS_URL="redis://127.0.0.1:6379/13",
    GATEHOUSE_SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
    GATEHOUSE_AUDIT_HASH_KEY="bench-only-audit-hash-key-0123456789-0123456789-012345",
    GATEHOUSE_AUDIT_SIGNING_KEY="bench-only-audit-signing-key-0123456789-0123456789-0123",
    GATEHOUSE_ALLOWED_HOSTS="127.0.0.1,localhost",
    GATEHOUSE_HTTPS="false",
    GATEHOUSE_LAB="true",
    GATEHOUSE_OFFLINE_MODEL_DELAY_MS="0",
    GATEHOUSE_LOG_LEVEL="WARNING",
)
os.environ.pop("ANTHROPIC_API_KEY", None)  # the offline model: the investigations reach the request alike

STORY = "LAB-SIEM-1001"  # the phishing story: its investigation asks to isolate WS-FIN-07
SETTLED = ("waiting", "completed", "failed")  # the resumed investigation released its worker
READS_PER_SERVER = 10  # room kept in each read server's rate-limit window before a new investigation
POLL_S = 0.02  # the bench only polls to know a sample is over; the figures are timestamps taken elsewhere


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ms_between(t0: float, moment: datetime) -> float:
    """From a time.time() taken here to a timestamp another process on this machine took (one clock)."""
    return (moment.timestamp() - t0) * 1000


def ensure_database() -> None:
    created = subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", "gatehouse_bench"], capture_output=True, text=True
    )
    if created.returncode and "already exists" not in created.stderr:
        raise SystemExit(f"createdb failed: {created.stderr.strip()}")


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "console", "worker", "--pool=threads", "-c", "4", "-B", "-l", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the tool servers it starts stop with it
    )


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def noop_round_trip_ms(timeout_s: float = 10) -> float:
    from console.celery import app

    started = time.perf_counter()
    assert app.send_task("celery.accumulate", args=[1]).get(timeout=timeout_s) == [1]  # returns its args
    return (time.perf_counter() - started) * 1000


def wait_for_room(calls_by_server: dict[str, int]) -> None:
    """Wait until each server's rate-limit window (fixed, in Redis) has room for these calls.

    A limited call never reaches the backend (a limited read changes the agent's story, a limited
    write fails the request), so the bench keeps to the configured limits, as a real pace would.
    """
    import redis
    from django.conf import settings

    from toolserver.models import ToolServer
    from toolserver.ratelimit import limit_of

    store = redis.Redis.from_url(settings.REDIS_URL)
    for server, calls in calls_by_server.items():
        key = f"gatehouse:ratelimit:{server}"  # toolserver.ratelimit.RedisRateLimiter's counter
        if int(store.get(key) or 0) + calls > limit_of(ToolServer.objects.get(name=server)).calls:
            time.sleep(max(store.pttl(key), 0) / 1000 + 0.05)


def make_pending_requests(count: int, tag: str) -> list:
    """`count` distinct LAB-SIEM-1001 alerts, each investigated until it waits on its isolate_host request.

    All are made before any approval: the offline model asks for isolation only while get_host
    says the host is not isolated, and the first approval isolates it. One at a time, each with
    room in every read server's window (the story makes at most 4 calls to any one server).
    """
    from investigations.intake.services import AlertIn, receive_alert
    from investigations.models import ActionRequest, Investigation
    from toolserver.catalog import SERVERS
    from toolserver.lab.estate import demo_alerts

    story = next(alert for alert in demo_alerts() if alert["external_id"] == STORY)
    requests = []
    for i in range(count):
        wait_for_room({server: READS_PER_SERVER for server in SERVERS if server != "edr-response"})
        investigation = receive_alert(AlertIn(**{**story, "external_id": f"{STORY}-bench-{tag}-{i:03d}"})).investigation

        def pending(investigation=investigation):
            ended = Investigation.objects.filter(pk=investigation.pk, status__in=("completed", "failed")).first()
            if ended is not None:
                raise SystemExit(
                    f"investigation {ended.pk} ended ({ended.status}: {ended.end_reason or ended.summary}) "
                    "without asking to isolate the host; see var/bench-approval-worker.log"
                )
            return ActionRequest.objects.filter(
                investigation=investigation, tool="isolate_host", state="pending"
            ).first()

        requests.append(wait_until(pending, timeout=60, interval=0.05, what=f"investigation {investigation.pk} to ask"))
    return requests


def approve_and_measure(client, request) -> dict:
    """One approval over HTTP; its timestamps, once the resumed investigation released its worker."""
    from investigations.models import ActionRequest, Event, Investigation
    from toolserver.lab.models import LabWrite

    investigation = Investigation.objects.get(pk=request.investigation_id)
    t0 = time.time()
    response = client.post(f"/api/actions/{request.pk}/approve", json={"reason": "bench"})
    answered = time.time()
    if response.status_code != 200:
        raise SystemExit(f"approve {request.pk}: HTTP {response.status_code} {response.text[:500]}")

    def next_event():
        current = ActionRequest.objects.get(pk=request.pk)
        if current.state in ("failed", "rejected", "expired", "cancelled"):
            raise SystemExit(f"request {request.pk} {current.state}: {current.outcome} {current.result}")
        event = (
            Event.objects.filter(investigation=investigation, seq__gt=investigation.last_seq)
            .exclude(kind__in=("action", "status"))
            .order_by("seq")
            .first()
        )
        settled = Investigation.objects.filter(pk=investigation.pk, status__in=SETTLED).exists()
        return event if event is not None and settled else None

    event = wait_until(next_event, timeout=30, interval=POLL_S, what=f"the next event after approving {request.pk}")
    write = (
        LabWrite.objects.filter(action="isolate_host", idempotency_key=request.idempotency_key).order_by("id").first()
    )
    if write is None:
        raise SystemExit(f"request {request.pk} succeeded but the lab logged no isolate_host with its key")
    is_result = event.kind == "tool_result" and event.data.get("tool_use_id") == request.tool_use_id
    return {
        "post": (answered - t0) * 1000,
        "write": ms_between(t0, write.received_at),
        "event": ms_between(t0, event.created_at),
        "outcome": write.outcome,
        "is_result": is_result,
    }


def cleanup(tag: str, username: str) -> None:
    """Delete what the bench made in the console's tables (the lab's write log is reset by the next seed).

    The audit records stay: the trail is append-only, and this is the bench's own database."""
    from django.contrib.auth.models import User

    from investigations.models import (
        ActionApproval,
        ActionRequest,
        ActionTransition,
        Alert,
        Investigation,
    )
    from toolserver.models import IdempotencyRecord

    alerts = Alert.objects.filter(external_id__startswith=f"{STORY}-bench-{tag}-")
    investigations = Investigation.objects.filter(alert__in=alerts)
    IdempotencyRecord.objects.filter(trigger__in=[alert.trigger for alert in alerts]).delete()
    ActionTransition.objects.filter(request__investigation__in=investigations).delete()
    ActionApproval.objects.filter(request__investigation__in=investigations).delete()
    ActionRequest.objects.filter(investigation__in=investigations).delete()
    investigations.delete()  # and their events
    alerts.delete()
    User.objects.filter(username=username).delete()  # and its API token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--approvals", type=int, default=30)
    parser.add_argument("--warm-up", type=int, default=3, help="approvals made first and not counted")
    parser.add_argument("--noops", type=int, default=300, help="bare Celery round trips, spread over the approvals")
    options = parser.parse_args()
    count = options.warm_up + options.approvals

    ensure_database()
    import django

    django.setup()
    import httpx2
    import redis
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from investigations.models import ToolPolicy
    from investigations.tokens import create_api_token

    call_command("migrate", verbosity=0)
    call_command("seed_lab", verbosity=0, stdout=io.StringIO())  # WS-FIN-07 not isolated; write log empty
    credentials = Path(tempfile.mkdtemp(prefix="bench-approval-"))  # mode 0700
    call_command("lab_keys", write_dir=credentials, stdout=io.StringIO())
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.flushdb()
    policy = ToolPolicy.objects.get(tool="isolate_host")
    if not policy.requires_approval or policy.approvals_needed != 1:
        raise SystemExit(
            f"the isolate_host policy must need one approval (it has: {policy.approvals_needed}, "
            f"requires_approval={policy.requires_approval})"
        )

    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    tag = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-approval-{tag}", password=uuid.uuid4().hex)
    user.groups.add(Group.objects.get(name="analyst"))
    _, token = create_api_token(user, "bench approval", decide=True)

    env = console_env(GATEHOUSE_CREDENTIALS_DIR=str(credentials))
    console = worker = None
    worker_log = ROOT / "var" / "bench-approval-worker.log"
    try:
        console = ConsoleProcess(env)
        worker = start_worker(
            {**env, "PORT": str(console.port), "GATEHOUSE_LAB_URL": f"{console.url}/lab/api"}, worker_log
        )
        noop_round_trip_ms(timeout_s=60)  # the worker is up and consuming

        requests = make_pending_requests(count, tag)
        client = httpx2.Client(
            base_url=console.url, headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False
        )
        # No-op round trips after each settled approval: both see the same machine (it may be shared).
        per_approval = max(1, options.noops // options.approvals)
        samples, noops = [], []
        for request in requests:
            wait_for_room({"edr-response": 1})
            samples.append(approve_and_measure(client, request))
            noops.append([noop_round_trip_ms() for _ in range(per_approval)])
        client.close()
        samples = samples[options.warm_up :]
        noops = [ms for batch in noops[options.warm_up :] for ms in batch]
        load_after = os.getloadavg()[0]
    finally:
        if worker is not None:
            stop_worker(worker)
        if console is not None:
            console.stop()
        cleanup(tag, user.username)
        store.flushdb()
        shutil.rmtree(credentials, ignore_errors=True)

    write, event, post = (percentiles([s[key] for s in samples]) for key in ("write", "event", "post"))
    noop = percentiles(noops)
    outcomes = {
        outcome: sum(s["outcome"] == outcome for s in samples) for outcome in sorted({s["outcome"] for s in samples})
    }
    print(
        f"approval latency, {len(samples)} approvals (+{options.warm_up} warm-up, not counted), {len(noops)} no-op "
        f"round trips, production mode (PostgreSQL, Redis), one worker --pool=threads -c 4 -B"
    )
    print(
        f"  machine        = {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print("  t0             = time.time() in the bench just before POST /api/actions/<id>/approve (bearer token)")
    print("  backend write  = the lab's LabWrite.received_at for the isolate_host with the request's idempotency key:")
    print("                   timezone.now() taken by the lab's view on arrival, before auth and the write transaction")
    print("  next event     = Event.created_at of the investigation's first event after t0 of a kind other than")
    print("                   action/status, taken by the worker when the resumed agent records it")
    print(
        f"                   (the tool_result of the approved call in {sum(s['is_result'] for s in samples)} of {len(samples)})"
    )
    print("  no-op          = app.send_task('celery.accumulate', [1]).get(): the same worker, result via Redis;")
    print(f"                   {per_approval} after each approval had settled")
    print(f'  lab outcomes   = {outcomes} ("already": WS-FIN-07 isolated by an earlier sample; the same call')
    print("                   to the lab, locking the host row and logging the write, minus one UPDATE)")
    print(f"  {'':<34}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"  {'approve POST answered':<34}{post[0]:>10.2f}{post[1]:>10.2f}")
    print(f"  {'approve -> backend write':<34}{write[0]:>10.2f}{write[1]:>10.2f}")
    print(f"  {'approve -> next event':<34}{event[0]:>10.2f}{event[1]:>10.2f}")
    print(f"  {'bare Celery no-op round trip':<34}{noop[0]:>10.2f}{noop[1]:>10.2f}")
    print(f"  {'ratio write/no-op':<34}{write[0] / noop[0]:>9.1f}x{write[1] / noop[1]:>9.1f}x")
    print(f"  {'ratio next event/no-op':<34}{event[0] / noop[0]:>9.1f}x{event[1] / noop[1]:>9.1f}x")


if __name__ == "__main__":
    main()
