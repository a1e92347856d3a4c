"""The investigations list after a storm: the filtered page with and without the filters' indexes.

    .venv/bin/python bench/investigation_list.py [--investigations 100000] [--samples 20] [--granted-samples N]
        [--indexed-only]

BENCH_DATABASE and BENCH_REDIS_URL name another database (default gatehouse_bench_list) and Redis.

Production mode only: PostgreSQL database $BENCH_DATABASE, dropped and re-created each run
(alerts and investigations bulk-created over 30 days: 2,000 hosts, 1,000 users, four sources).
Pages are fetched in-process with Django's test client, as an analyst (sees every investigation)
and as a user without a role granted 500 of them (the visibility rule's subquery in play;
--granted-samples, default --samples). Then, unless --indexed-only, the indexes of migration 0019 are
dropped by name (migrating back would drop the later migrations' columns the list reads) and the same
pages measured again.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = os.environ.get("BENCH_DATABASE", "gatehouse_bench_list")

os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
    GATEHOUSE_SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
    GATEHOUSE_AUDIT_HASH_KEY="bench-only-audit-hash-key-0123456789-0123456789-012345",
    GATEHOUSE_AUDIT_SIGNING_KEY="bench-only-audit-signing-key-0123456789-0123456789-0123",
    GATEHOUSE_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    GATEHOUSE_HTTPS="false",
    GATEHOUSE_LOG_LEVEL="WARNING",
    # The bench signs people in with a password alone: no second factor, step-up or idle timeout.
    GATEHOUSE_MFA_REQUIRED="false",
    GATEHOUSE_STEP_UP_MINUTES="0",
    GATEHOUSE_IDLE_MINUTES="0",
)

BATCH = 5_000
PASSWORD = "bench-password-0123"  # noqa: S105 - a made-up bench user's
# (label, query string): one rare and one common value of each kind of filter.
CASES = [
    ("no filter", ""),
    ("host (0.05 %)", "host=ws-0042"),
    ("user (0.1 %)", "user=USER0007"),
    ("verdict malicious (5 %)", "verdict=malicious"),
    ("severity critical (2 %)", "severity=critical"),
    ("source + status (common)", "source=splunk&status=completed"),
    ("observed, one hour", "time=observed&since=2026-11-10T12:00&until=2026-11-10T13:00"),
    ("search, rare text", "q=ws-0042"),
    ("search, no match", "q=no-such-text"),
    ("host + verdict, page 2", "host=ws-0042&verdict=benign&page=2"),
]


# Migration 0019's indexes (the list's filters), dropped for the pass without them.
FILTER_INDEXES = (
    "alert_host_upper",
    "alert_account_upper",
    "alert_source",
    "alert_severity",
    "alert_observed_at",
    "investigation_verdict",
)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def recreate_database() -> None:
    for command in (["dropdb", "--if-exists", DATABASE], ["createdb", DATABASE]):
        done = subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres"], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{command[0]} failed: {done.stderr.strip()}")


def fill(count: int) -> None:
    from datetime import UTC, datetime

    from django.contrib.auth.models import Group, User
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from guardian.models import UserObjectPermission

    from investigations.models import Alert, Investigation

    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    step = timedelta(days=30) / count
    severities = ["low"] * 40 + ["medium"] * 40 + ["high"] * 18 + ["critical"] * 2
    ends = [("completed", "benign")] * 70 + [("completed", "malicious")] * 5 + [("completed", "inconclusive")] * 10
    ends += [("failed", "")] * 5 + [("queued", "")] * 7 + [("running", "")] * 3
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        numbers = range(first, min(first + BATCH, count))
        alerts = Alert.objects.bulk_create(
            Alert(
                source=rng.choice(["splunk", "wazuh", "alertmanager", "ocsf"]),
                external_id=f"B-{n}",
                title=f"Suspicious process on host {n % 2000}",
                severity=rng.choice(severities),
                host=f"WS-{rng.randrange(2000):04d}",
                account=f"user{rng.randrange(1000):04d}",
                observed_at=start + step * n - timedelta(minutes=2),
            )
            for n in numbers
        )
        rows = [
            Investigation(
                alert=alert,
                status=(end := rng.choice(ends))[0],
                verdict=end[1],
                model="bench",
                budget_tool_calls=1,
                budget_tokens=1,
                budget_seconds=1,
            )
            for alert in alerts
        ]
        Investigation.objects.bulk_create(rows)
    with connection.cursor() as cursor:  # auto_now_add set them all to now: spread them over the month
        cursor.execute(
            "UPDATE investigations_investigation i SET created_at = a.observed_at + interval '2 minutes' "
            "FROM investigations_alert a WHERE a.id = i.alert_id"
        )
    print(f"filled {count:,} investigations in {time.perf_counter() - started:.0f} s")
    analyst = User.objects.create_user("bench-analyst", password=PASSWORD)
    analyst.groups.add(Group.objects.get(name="analyst"))
    granted = User.objects.create_user("bench-granted", password=PASSWORD)
    kind = ContentType.objects.get_for_model(Investigation)
    permission = kind.permission_set.get(codename="view_investigation")
    ids = rng.sample(list(Investigation.objects.values_list("pk", flat=True)), 500)
    UserObjectPermission.objects.bulk_create(
        UserObjectPermission(user=granted, permission=permission, content_type=kind, object_pk=str(pk)) for pk in ids
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(samples: int, granted_samples: int) -> dict:
    """p50 and p95 per user and case (before the visibility rule looked grants up by primary key,
    each of the granted user's pages took seconds: pass --granted-samples 1 to bench that code)."""
    from django.test import Client

    figures = {}
    for username, runs, warm in (
        ("bench-analyst", samples, 2),
        ("bench-granted", granted_samples, min(granted_samples - 1, 2)),
    ):
        client = Client()
        assert client.login(username=username, password=PASSWORD)
        for label, query in CASES:
            timings = []
            for sample in range(runs + warm):
                began = time.perf_counter()
                response = client.get(f"/investigations/?{query}")
                elapsed = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, (query, response.status_code)
                if sample >= warm:
                    timings.append(elapsed)
            figures[username, label] = percentiles(timings)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investigations", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--granted-samples", type=int, help="the granted user's samples (default: --samples)")
    parser.add_argument("--indexed-only", action="store_true", help="skip the pass without 0019's indexes")
    arguments = parser.parse_args()
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(arguments.investigations)
    granted_samples = arguments.granted_samples or arguments.samples
    indexed = measure(arguments.samples, granted_samples)
    bare = indexed
    if not arguments.indexed_only:
        from django.db import connection

        with connection.cursor() as cursor:
            for index in FILTER_INDEXES:
                cursor.execute(f"DROP INDEX IF EXISTS {index}")
            cursor.execute("ANALYZE")
        bare = measure(arguments.samples, granted_samples)
    print(f"\nlist page, {arguments.samples} samples each, granted {granted_samples}, in-process, ms (p50 / p95):")
    print(f"{'who':<8} {'filter':<26} {'indexed':>15} {'without 0019':>15}")
    for who, label in indexed:
        shown = "analyst" if who == "bench-analyst" else "granted"
        with_index, without = indexed[who, label], bare[who, label]
        print(
            f"{shown:<8} {label:<26} {with_index[0]:>7.1f} /{with_index[1]:>6.1f} {without[0]:>7.1f} /{without[1]:>6.1f}"
        )


if __name__ == "__main__":
    main()
