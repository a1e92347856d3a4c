"""The audit trail at a million records: the filtered list page against the Django admin
changelist for the same query, the streamed export (whole, and filtered with a proof per line), and
verify_audit.

    .venv/bin/python bench/audit.py [--records 1000000] [--samples 40]

Production mode only: PostgreSQL database gatehouse_bench_audit, dropped and re-created each run
(records are appended through the chain, 10,000 per transaction, spread over 30 days). Pages are
fetched in-process with Django's test client signed in as a manager (ours) and as a superuser
(the admin), both on the same PostgreSQL; every page of ours also appends its access record, as
in production. The export runs in a child process (so its peak RSS is its own) over the same
generator the export view streams.
"""

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "gatehouse_bench_audit"

os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    REDIS_URL="redis://127.0.0.1:6379/12",
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

INVESTIGATIONS = 20_000
BATCH = 10_000
USERS = [f"user{n:04d}" for n in range(500)]
# (tool, server, write) as the catalog has them, weighted as an agent calls them.
CALLS = [
    ("search_logins", "siem", 30),
    ("get_host", "edr", 25),
    ("get_user", "identity", 15),
    ("lookup_indicator", "intel", 15),
    ("list_processes", "edr", 10),
    ("isolate_host", "edr-response", 3),
    ("open_ticket", "ticketing", 2),
]
OUTCOMES = [
    ("ok", "", 85),
    ("error", "siem_timeout", 4),
    ("error", "invalid_arguments", 3),
    ("error", "intel_unavailable", 2),
    ("rate_limited", "rate_limited", 3),
    ("replayed", "", 1),
    ("approved", "", 1),
    ("denied", "", 1),
]
# The filtered views measured: (label, our query string, the admin's query string).
CASES = [
    (
        "tool + outcome (0.5 %)",
        "tool=lookup_indicator&outcome=error&reason=intel_unavailable",
        "tool__exact=lookup_indicator&outcome__exact=error&reason__exact=intel_unavailable",
    ),
    ("server + kind (common)", "server=edr&kind=tool_call", "server__exact=edr&kind__exact=tool_call"),
    ("outcome, rare (1 %)", "outcome=denied", "outcome__exact=denied"),
]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def recreate_database() -> None:
    for command in (["dropdb", "--if-exists", DATABASE], ["createdb", DATABASE]):
        done = subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres"], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{command[0]} failed: {done.stderr.strip()}")


def setup_django():
    import django

    django.setup()


def fill(records: int) -> None:
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from investigations.audit import chain as audit
    from investigations.models import Alert, Investigation
    from toolserver.audit import keyed_hash

    rng = random.Random(7)
    now = timezone.now()
    alerts = Alert.objects.bulk_create(
        Alert(source="bench", external_id=f"B-{n}", title="bench", severity="high", observed_at=now)
        for n in range(INVESTIGATIONS)
    )
    investigations = Investigation.objects.bulk_create(
        Investigation(alert=alert, model="bench", budget_tool_calls=1, budget_tokens=1, budget_seconds=1)
        for alert in alerts
    )
    correlation_ids = [investigation.correlation_id for investigation in investigations]
    hashed_users = [keyed_hash(user) for user in USERS]
    calls = [call for call in CALLS for _ in range(call[2])]
    outcomes = [outcome for outcome in OUTCOMES for _ in range(outcome[2])]
    start, step = now - timedelta(days=30), timedelta(days=30) / records

    def entry(n: int) -> dict:
        tool, server, _ = rng.choice(calls)
        outcome, reason, _ = rng.choice(outcomes)
        decision = outcome in ("approved", "denied")
        write = tool in ("isolate_host", "open_ticket")
        return {
            "created_at": start + step * n,
            "kind": "decision" if decision else "tool_call",
            "server": server,
            "tool": tool,
            "tool_use_id": f"toolu_{n:012d}",
            "arguments": {"username": rng.choice(hashed_users), "lookback_hours": rng.choice((1, 6, 12, 24))},
            "outcome": outcome,
            "reason": reason,
            "idempotency_key": f"{n:064x}" if write else "",
            "backend_status": "200" if outcome == "ok" else "",
            "latency_ms": rng.uniform(5, 400),
            "correlation_id": rng.choice(correlation_ids),
            "actor": f"user:{rng.choice(USERS)}" if decision else "agent",
            "source": f"lab:{server}",
            "extra": {},
        }

    started = time.perf_counter()
    for first in range(0, records, BATCH):
        audit.append_many([entry(n) for n in range(first, min(first + BATCH, records))], batch_size=2000)
        if (first // BATCH) % 10 == 9:
            print(f"  … {first + BATCH:,} records", flush=True)
    elapsed = time.perf_counter() - started
    print(f"filled {records:,} records in {elapsed:.0f} s ({records / elapsed:,.0f} records/s, hashing included)")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    manager = User.objects.create_user("bench-manager", password="bench-password-0123")
    manager.groups.add(Group.objects.get(name="manager"))
    User.objects.create_superuser("bench-admin", password="bench-password-0123")


def measure_pages(samples: int) -> None:
    from django.test import Client

    ours, admin = Client(), Client()
    assert ours.login(username="bench-manager", password="bench-password-0123")
    assert admin.login(username="bench-admin", password="bench-password-0123")
    print(f"\nlist pages, {samples} samples each (+3 warm-up), in-process, ms:")
    print(f"{'filter':<26} {'ours p50':>9} {'ours p95':>9} {'admin p50':>10} {'admin p95':>10}")
    for label, our_query, admin_query in CASES:
        figures = []
        for client, url in (
            (ours, f"/audit/?{our_query}"),
            (admin, f"/admin/investigations/auditrecord/?{admin_query}"),
        ):
            timings = []
            for sample in range(samples + 3):
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if sample >= 3:
                    timings.append(elapsed)
            figures += percentiles(timings)
        print(f"{label:<26} {figures[0]:>9.1f} {figures[1]:>9.1f} {figures[2]:>10.1f} {figures[3]:>10.1f}")


EXPORTS = ("jsonl", "csv", "jsonl-filtered")


def export_child(label: str) -> None:
    """In a fresh process: stream the whole trail (or, `jsonl-filtered`, its tool calls: each line with its
    inclusion proof), count rows and bytes, report time and peak memory."""
    from django.contrib.auth.models import User

    from investigations.audit import trail as audit_trail
    from investigations.audit.trail import AuditFilter

    manager = User.objects.get(username="bench-manager")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = size = 0
    started = time.perf_counter()
    fmt, filtered = label.split("-")[0], label.endswith("-filtered")
    filters = AuditFilter(kind="tool_call") if filtered else AuditFilter()
    for chunk in audit_trail.exporting(manager, filters, fmt):
        rows += chunk.count("\n")
        size += len(chunk.encode())
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows -= 1  # the header line, the signed head
    print(
        f"{label:<14} {rows:>10,} rows {size / 1e6:>8.0f} MB {elapsed:>7.1f} s {rows / elapsed:>10,.0f} rows/s "
        f"peak RSS {peak_kb / 1024:>6.0f} MB (+{(peak_kb - baseline_kb) / 1024:.0f} MB while exporting)"
    )


def measure_verify() -> None:
    from investigations.audit import chain as audit

    started = time.perf_counter()
    checked, found = audit.verify_database()
    elapsed = time.perf_counter() - started
    print(
        f"\nverify_audit: {checked:,} records in {elapsed:.0f} s ({checked / elapsed:,.0f} records/s), "
        f"{'intact' if found is None else found}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--export-child", choices=EXPORTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        setup_django()
        export_child(args.export_child)
        return
    recreate_database()
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(args.records)
    measure_pages(args.samples)
    print("\nexport of the whole trail, in a child process (peak RSS: the process's, Django loaded):")
    for label in EXPORTS:
        subprocess.run([sys.executable, __file__, "--export-child", label], check=True, cwd=ROOT)
    measure_verify()


if __name__ == "__main__":
    main()
