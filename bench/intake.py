"""An alert storm at intake: 300 alerts of one rule on one host in a burst, and 50 on 50 hosts.

Path measured: POST /api/alerts (bearer token: hash lookup, last_used_at, the integration's rate in
Redis) -> AlertIn validation -> the integration's row lock -> dedup -> grouping key -> the open
investigation of that key (joined: one alert row) or a new investigation (queued; handed to a
worker or held by the start cap) -> commit -> 201. Baseline: POST /bench/bare, a sync Django view
that reads the body and returns 201, through the same ASGI handler and middleware, same process,
same run, same concurrency (bench/intake_asgi.py). The goal: the 300-alert burst accepted in
under 10 s, as one investigation.

    .venv/bin/python bench/intake.py [--concurrency 8]

Production mode only: PostgreSQL database gatehouse_bench_storm (created and migrated if missing,
kept as a bench database) and Redis db 15 (flushed when done). Serves bench/intake_asgi.py with
one uvicorn process, as `manage.py serve` does; no worker (what intake queues is not run).
GATEHOUSE_INTAKE_RATE is raised for the run: the burst, not the per-integration rate (600/60 by
default, sized for a storm), is measured; and GATEHOUSE_INTAKE_MAX_QUEUED (50
by default, held investigations included), as no worker drains the warm-up's and the storm's
investigations before the 50 hosts come.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import console_env, free_port, wait_until  # noqa: E402  (no Django imports)

DATABASE = "gatehouse_bench_storm"
os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    REDIS_URL="redis://127.0.0.1:6379/7",  # not 15: the tests' production mode flushes that one
    GATEHOUSE_SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
    GATEHOUSE_AUDIT_HASH_KEY="bench-only-audit-hash-key-0123456789-0123456789-012345",
    GATEHOUSE_AUDIT_SIGNING_KEY="bench-only-audit-signing-key-0123456789-0123456789-0123",
    GATEHOUSE_ALLOWED_HOSTS="127.0.0.1,localhost",
    GATEHOUSE_HTTPS="false",
    GATEHOUSE_LOG_LEVEL="WARNING",
    GATEHOUSE_INTAKE_RATE="100000/60",
    GATEHOUSE_INTAKE_MAX_QUEUED="100",
)
GOAL_S = 10.0
WARM_UP = 30


def p50_p99(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def alert(source: str, tag: str, n: int, host: str) -> dict:
    return {
        "source": source,
        "external_id": f"{tag}-{n:04d}",
        "title": "Brute force against SSH",
        "rule": f"ssh-brute-force-{tag}",
        "severity": "medium",
        "host": host,
        "observed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "details": {"attempts": 40, "source_ip": "203.0.113.9"},
    }


async def burst(url: str, token: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float], list[int]]:
    """POST every body, `concurrency` at a time: the wall time, each POST's latency (ms), each status."""
    import httpx2 as httpx

    latencies: list[float] = [0.0] * len(bodies)
    statuses: list[int] = [0] * len(bodies)
    queue: asyncio.Queue = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=concurrency), trust_env=False
    ) as client:

        async def sender() -> None:
            while not queue.empty():
                n, body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=body, headers=headers)
                latencies[n] = (time.perf_counter() - started) * 1000
                statuses[n] = response.status_code

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return wall, latencies, statuses


def ensure_database() -> None:
    created = subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True, text=True
    )
    if created.returncode and "already exists" not in created.stderr:
        raise SystemExit(f"createdb failed: {created.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8, help="POSTs in flight at once")
    options = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    import httpx2
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from investigations.intake.services import create_integration
    from investigations.models import Alert, Event, Integration, Investigation

    call_command("migrate", verbosity=0)
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.flushdb()
    tag = uuid.uuid4().hex[:8]
    integration, token = create_integration(f"bench-siem-{tag}", by="bench")  # its source: its name

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = ROOT / "var" / "bench-intake-server.log"
    server_log.parent.mkdir(exist_ok=True)
    log = server_log.open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "bench.intake_asgi:application"),
            *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=console_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    load_before = os.getloadavg()[0]
    try:

        def answers() -> bool:
            if server.poll() is not None:
                raise SystemExit(f"uvicorn exited: {server_log.read_text()[-2000:]}")
            try:
                return httpx2.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(answers, timeout=30, what="uvicorn serving bench/intake_asgi.py")
        run = asyncio.run
        c = options.concurrency
        run(burst(f"{base}/bench/bare", token, [alert(integration.name, "warm", n, "warm") for n in range(WARM_UP)], c))
        run(
            burst(
                f"{base}/api/alerts",
                token,
                [alert(integration.name, f"warm{tag}", n, "warm-up") for n in range(WARM_UP)],
                c,
            )
        )
        bare = run(
            burst(f"{base}/bench/bare", token, [alert(integration.name, "bare", n, "web-01") for n in range(300)], c)
        )
        one_host = run(
            burst(
                f"{base}/api/alerts", token, [alert(integration.name, f"one{tag}", n, "web-01") for n in range(300)], c
            )
        )
        many = run(
            burst(
                f"{base}/api/alerts",
                token,
                [alert(integration.name, f"many{tag}", n, f"web-{n:02d}") for n in range(50)],
                c,
            )
        )
        load_after = os.getloadavg()[0]

        storm = Investigation.objects.filter(alert__external_id__startswith=f"one{tag}-")
        spread = Investigation.objects.filter(alert__external_id__startswith=f"many{tag}-")
        checks = {
            "300 one-host POSTs answered 201": one_host[2] == [201] * 300,
            "1 investigation, 299 related alerts": storm.count() == 1 and storm.get().related_alerts.count() == 299,
            "50 hosts: 50 POSTs 201, 50 investigations": many[2] == [201] * 50 and spread.count() == 50,
            "50 hosts: none lost (queued, released or held)": spread.filter(status="queued").count() == 50,
        }
        held = spread.filter(released_at__isnull=True).count()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        alerts = Alert.objects.filter(integration=integration)
        investigations = Investigation.objects.filter(alert__in=alerts)
        Event.objects.filter(investigation__in=investigations).delete()
        alerts.update(joined=None)
        investigations.delete()
        alerts.delete()
        Integration.objects.filter(pk=integration.pk).update(revoked_at=datetime.now(UTC), sources=[])
        store.flushdb()

    print(
        f"intake of an alert storm, production mode (PostgreSQL, Redis), one uvicorn process, {options.concurrency} "
        f"POSTs in flight, +{WARM_UP} warm-up POSTs each (not counted)"
    )
    print(f"  machine  = {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before, {load_after:.2f} after")
    print(
        "  ours     = POST /api/alerts with an integration token: auth, rate, validation, lock, dedup, grouping, insert"
    )
    print("  bare     = POST /bench/bare: a sync Django view returning 201, same handler and middleware")
    print(f"  {'case':<34}{'POSTs':>6}{'wall s':>9}{'alerts/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (wall, latencies, _) in (
        ("bare view (floor)", bare),
        ("ours: 300, one rule, one host", one_host),
        ("ours: 50, one rule, 50 hosts", many),
    ):
        p50, p99 = p50_p99(latencies)
        print(f"  {name:<34}{len(latencies):>6}{wall:>9.2f}{len(latencies) / wall:>10.1f}{p50:>9.2f}{p99:>9.2f}")
    print(
        f"  ratio ours/bare, 300 burst: wall {one_host[0] / bare[0]:.1f}x, p99 {p50_p99(one_host[1])[1] / p50_p99(bare[1])[1]:.1f}x"
    )
    print(
        f"  goal: the 300-alert burst accepted in under {GOAL_S:.0f} s: {'met' if one_host[0] < GOAL_S else 'NOT met'}"
    )
    print(
        f"  50 hosts: {50 - held} handed to workers, {held} held by the start cap (20 a minute by default; the "
        "warm-up's and the 300-burst's investigations took 2 of the minute's)"
    )
    print(f"  statuses: one host {dict(Counter(one_host[2]))}, 50 hosts {dict(Counter(many[2]))}")
    for what, ok in checks.items():
        print(f"  check: {what}: {'ok' if ok else 'FAILED'}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
