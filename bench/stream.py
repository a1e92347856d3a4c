"""Latency from a worker publishing an investigation event to a websocket viewer receiving it.

Ours: record_event (event insert + seq update, then group_send through the Redis channel
layer) -> InvestigationConsumer -> websocket, to a logged-in analyst's socket.
Bare: channel_layer.group_send through the same Redis -> a consumer that forwards the text
-> websocket. Both served by one uvicorn process (bench/stream_asgi.py), same run.

    .venv/bin/python bench/stream.py [--events 300]

Production mode only: PostgreSQL database gatehouse_bench (created and migrated if missing, kept
as a bench database) and Redis db 14 (flushed when done). Needs both running locally.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/gatehouse_bench",
    REDIS_URL="redis://127.0.0.1:6379/14",
    GATEHOUSE_SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
    GATEHOUSE_AUDIT_HASH_KEY="bench-only-audit-hash-key-0123456789-0123456789-012345",
    GATEHOUSE_AUDIT_SIGNING_KEY="bench-only-audit-signing-key-0123456789-0123456789-0123",
    GATEHOUSE_ALLOWED_HOSTS="127.0.0.1,localhost",
    GATEHOUSE_HTTPS="false",
    GATEHOUSE_LOG_LEVEL="WARNING",
    # The bench signs people in with a password alone: no second factor, step-up or idle timeout.
    GATEHOUSE_MFA_REQUIRED="false",
    GATEHOUSE_STEP_UP_MINUTES="0",
    GATEHOUSE_IDLE_MINUTES="0",
)

TEXT = "The host WS-FIN-07 made 14 outbound connections to 203.0.113.9 in the last hour. " * 2
WARM_UP = 30
TIMEOUT_S = 10  # one event not reaching every viewer by then is a failure, not a slow sample


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class Viewers:
    """N websocket clients of one URL; each sample is receive time minus the t0 the message carries.

    Clients and publisher share this process, so perf_counter_ns is one clock for both.
    """

    def __init__(self, t0_of):
        self.t0_of = t0_of
        self.samples: list[float] = []
        self.sockets = []
        self.readers = []
        self.pending = 0
        self.arrived = asyncio.Event()

    async def open(self, url: str, count: int, origin: str, headers: dict) -> None:
        from websockets.asyncio.client import connect

        for _ in range(count):
            # The handshake completes after the consumer joined its group: nothing is missed.
            socket = await connect(url, origin=origin, additional_headers=headers, proxy=None)
            self.sockets.append(socket)
            self.readers.append(asyncio.create_task(self._read(socket)))

    async def _read(self, socket) -> None:
        async for text in socket:
            received = time.perf_counter_ns()
            self.samples.append((received - self.t0_of(json.loads(text))) / 1e6)
            self.pending -= 1
            if self.pending == 0:
                self.arrived.set()

    async def deliver(self, publish) -> None:
        """Publish one message and wait until every viewer has it: latency, not throughput."""
        self.pending = len(self.sockets)
        self.arrived.clear()
        await publish()
        try:
            await asyncio.wait_for(self.arrived.wait(), TIMEOUT_S)
        except TimeoutError:
            raise SystemExit(
                f"{self.pending} viewer(s) did not get a message in {TIMEOUT_S} s (see var/bench-stream-server.log)"
            ) from None

    async def measure(self, publish, events: int) -> list[float]:
        for _ in range(WARM_UP):
            await self.deliver(publish)
        self.samples.clear()
        for _ in range(events):
            await self.deliver(publish)
        return list(self.samples)

    async def close(self) -> None:
        for socket in self.sockets:
            await socket.close()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def run_cases(port: int, investigation_id: int, cookie: str, events: int) -> dict:
    from channels.layers import get_channel_layer

    from investigations.models import Investigation
    from investigations.runs.events import record_event

    origin, base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    layer = get_channel_layer()
    bare_group = f"bench-stream-{uuid.uuid4().hex[:8]}"

    def record() -> None:  # in a plain thread, as a Celery worker calls it (t0 taken in that thread)
        record_event(investigation_id, "text", {"text": TEXT, "t0": time.perf_counter_ns()})

    async def publish_ours() -> None:
        await asyncio.to_thread(record)

    async def publish_bare() -> None:
        text = json.dumps({"text": TEXT, "t0": time.perf_counter_ns()})
        await layer.group_send(bare_group, {"type": "bench.message", "text": text})

    results = {}
    for count in (1, 50):
        last_seq = await asyncio.to_thread(
            lambda: Investigation.objects.values_list("last_seq", flat=True).get(pk=investigation_id)
        )
        cases = {
            "ours": (
                f"{base}/ws/investigations/{investigation_id}/?after={last_seq}",
                publish_ours,
                lambda message: message["event"]["data"]["t0"],
            ),
            "bare": (f"{base}/ws/bare/{bare_group}/", publish_bare, lambda message: message["t0"]),
        }
        for case, (url, publish, t0_of) in cases.items():
            viewers = Viewers(t0_of)
            try:
                await viewers.open(url, count, origin, {"Cookie": cookie})
                results[case, count] = await viewers.measure(publish, events)
            finally:
                await viewers.close()
    return results


def ensure_database() -> None:
    created = subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", "gatehouse_bench"], capture_output=True, text=True
    )
    if created.returncode and "already exists" not in created.stderr:
        raise SystemExit(f"createdb failed: {created.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    events = parser.parse_args().events

    ensure_database()
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from investigations.models import Alert, Investigation
    from tests.support import free_port, wait_until

    call_command("migrate", verbosity=0)
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.flushdb()

    # An analyst viewing one investigation, logged in through a real session.
    tag = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-stream-{tag}", password=uuid.uuid4().hex)
    user.groups.add(Group.objects.get(name="analyst"))
    alert = Alert.objects.create(
        source="bench", external_id=f"stream-{tag}", title="bench stream", severity="low", observed_at=timezone.now()
    )
    # Made directly, not through intake: that would enqueue a run for a worker.
    investigation = Investigation.objects.create(
        alert=alert, model="bench", budget_tool_calls=1, budget_tokens=1000, budget_seconds=10
    )
    client = Client()
    client.force_login(user)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value

    port = free_port()
    server_log = ROOT / "var" / "bench-stream-server.log"
    server_log.parent.mkdir(exist_ok=True)
    log = server_log.open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.stream_asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        import httpx2

        def answers() -> bool:
            if server.poll() is not None:
                raise SystemExit(f"uvicorn exited: {server_log.read_text()[-2000:]}")
            try:
                return httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(answers, what="uvicorn serving bench/stream_asgi.py")
        cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
        results = asyncio.run(run_cases(port, investigation.pk, cookie, events))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # uvicorn still draining websockets: not what is measured
            server.kill()
            server.wait()
        log.close()
        investigation.delete()  # and its events
        alert.delete()
        Session.objects.filter(session_key=session_key).delete()
        user.delete()
        store.flushdb()

    print(
        f"event delivery latency to websocket viewers, {events} events per case "
        f"(+{WARM_UP} warm-up), production mode (PostgreSQL, Redis channel layer)"
    )
    print("  ours = record_event from a worker thread: event insert + seq update (one transaction), then")
    print("         group_send via Redis (core.live: one long-lived sender loop per worker process),")
    print("         InvestigationConsumer, websocket")
    print("  bare = group_send via Redis, a consumer forwarding the text, websocket")
    print("  samples: every delivered message, all viewers included")
    print(f"  {'case':<16}{'viewers':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for count in (1, 50):
        ours, bare = percentiles(results["ours", count]), percentiles(results["bare", count])
        print(f"  {'ours':<16}{count:>8}{ours[0]:>10.2f}{ours[1]:>10.2f}")
        print(f"  {'bare':<16}{count:>8}{bare[0]:>10.2f}{bare[1]:>10.2f}")
        print(f"  {'ratio ours/bare':<16}{count:>8}{ours[0] / bare[0]:>9.1f}x{ours[1] / bare[1]:>9.1f}x")
    errors = server_log.read_text().count("Exception in ASGI application")
    if errors:  # a consumer that crashed mid-run is worth knowing about beside the figures
        print(f"  server log: {errors} crashed consumer(s), see {server_log.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
