"""Investigations in flight on ONE worker process: N started at once, each turn of the model taking seconds.

The model is the offline model behind a real HTTP server in a process of its own
(bench/model_server.py; the worker reaches it through the SDK with ANTHROPIC_BASE_URL, as it reaches
Anthropic's API), waiting --turn-delay-ms before each streamed answer and --chunk-delay-ms between its
events, as a real model does; so the worker pays for its side of each turn only. `--model in-process`
runs it inside the worker's SDK instead (the tests' and the embedded default's way), its work then the
worker's too. The lab answers the tool calls. N alerts of the benign story (the travelling manager: reads only) are saved in one
transaction, so their N investigations reach the broker together. Measured, per N:
- all done: from the commit to the last investigation's finished_at;
- p50/p99 of each investigation's created_at -> finished_at;
- the ideal: the story's model turns x the turn delay (what one investigation alone would need at least),
  and one investigation's time alone on the same worker, warm: the second of two run first (the first
  finds the tool servers still starting, as the worker warms them when it starts);
- peak RSS of the worker and the tool-server processes it started (each in a session of its own) and
  of its largest process, sampled from /proc;
- peak PostgreSQL connections of the worker (pg_stat_activity, by application_name), sampled;
- the worker process's CPU time over the run (user + system, /proc): what bounds it, as its Python
  runs on one core at a time, and a figure a loaded machine changes less than the times;
- the CPU time of every other part over the same run (the worker's tool servers, the console serving
  the lab, the model server, the rest of the machine) and all of it over the cores: a floor on the
  time on this machine whatever the worker does, printed beside the ideal.

    .venv/bin/python bench/scale.py --n 4 50 200 [--pool threads --concurrency 300] [--turn-delay-ms 2000]

Production mode only: PostgreSQL database gatehouse_scale_bench (created and migrated if missing,
kept; the lab is re-seeded) and Redis db 14 (flushed). Starts the console (it serves the lab) and,
for each N, a fresh `celery -A console worker --pool=<pool> -c <concurrency>`; logs in var/.
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
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import ConsoleProcess, console_env, cpu_seconds, stop_process, wait_until  # noqa: E402  (no Django imports)

DATABASE = "gatehouse_scale_bench"
WORKER_APP = "gatehouse-bench-worker"  # the worker's connections' application_name (libpq's PGAPPNAME)
os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    REDIS_URL="redis://127.0.0.1:6379/14",
    GATEHOUSE_SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
    GATEHOUSE_AUDIT_HASH_KEY="bench-only-audit-hash-key-0123456789-0123456789-012345",
    GATEHOUSE_AUDIT_SIGNING_KEY="bench-only-audit-signing-key-0123456789-0123456789-0123",
    GATEHOUSE_ALLOWED_HOSTS="127.0.0.1,localhost",
    GATEHOUSE_HTTPS="false",
    GATEHOUSE_LAB="true",
    GATEHOUSE_LAB_IN_PRODUCTION="true",
    GATEHOUSE_CREDENTIALS_KEY="bench-only-credentials-key-0123456789-0123456789-0123",
    GATEHOUSE_LOG_LEVEL="WARNING",
)
os.environ.pop("ANTHROPIC_API_KEY", None)  # the offline model
STORY = "LAB-SIEM-1003"  # the travelling manager: benign, reads only


def ensure_database() -> None:
    created = subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], capture_output=True, text=True
    )
    if created.returncode and "already exists" not in created.stderr:
        raise SystemExit(f"createdb failed: {created.stderr.strip()}")


def with_descendants(pid: int) -> list[int]:
    """`pid` and every process under it: the worker's tool servers (each in a session of its own, so not
    in its process group) and what they started."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, ValueError):
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used so far, all cores (/proc/stat: all but idle and iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds over the run of each part: the worker, its tool servers (the processes it started,
    each in a session of its own), the console (it serves the lab the tool servers call), the model
    server, and the whole machine (PostgreSQL, Redis and this script are the remainder). Every part
    runs on the machine's cores, so all of it over the cores is a floor on the time, whatever the
    worker does."""

    def __init__(self, worker: int, console: int, model: int | None):
        self.pids = {"worker": [worker], "console": [console], "model": [model] if model else []}
        self.pids["tool servers"] = with_descendants(worker)[1:]
        self.last: dict[int, float] = {}  # each process's CPU when last read: one that ended counts that

    def _cpu(self, pid: int) -> float:
        with suppress(OSError):
            self.last[pid] = cpu_seconds(pid)
        return self.last.get(pid, 0.0)

    def _read(self) -> dict[str, float]:
        read = {name: sum(self._cpu(pid) for pid in pids) for name, pids in self.pids.items()}
        return read | {"machine": machine_cpu_seconds()}

    def __enter__(self):
        self.before = self._read()
        return self

    def __exit__(self, *exc):
        after = self._read()
        self.used = {name: after[name] - self.before[name] for name in after}


def rss_kib(pids: list[int]) -> tuple[int, int]:
    """(sum, largest) VmRSS in KiB of these processes."""
    sizes = []
    for pid in pids:
        with suppress(OSError, ValueError), open(f"/proc/{pid}/status") as status:  # else it ended meanwhile
            sizes += [int(line.split()[1]) for line in status if line.startswith("VmRSS:")]
    return sum(sizes), max(sizes, default=0)


class Sampler:
    """Peak RSS of the worker and its tool servers, and peak database connections of the worker, every 0.2 s."""

    def __init__(self, worker: int):
        self.worker, self.rss, self.largest, self.connections = worker, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", autocommit=True) as db:
            while not self._stop.wait(0.2):
                total, largest = rss_kib(with_descendants(self.worker))
                self.rss, self.largest = max(self.rss, total), max(self.largest, largest)
                (count,) = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    (DATABASE, WORKER_APP),
                ).fetchone()
                self.connections = max(self.connections, count)


def start_worker(env: dict, pool: str, concurrency: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "console", "worker", f"--pool={pool}", "-c", str(concurrency)]
    return subprocess.Popen(
        [*command, "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT,
        env={**env, "PGAPPNAME": WORKER_APP},
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed whole at the end (its tool servers die with it too)
    )


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)  # and whatever it started that outlived it
    worker.wait(timeout=10)


def start_model_server(env: dict, options) -> tuple[subprocess.Popen, str]:
    """The offline model's HTTP server, and its address once it listens."""
    server = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "model_server.py"), "--port", "0"),
            *("--turn-delay-ms", str(options.turn_delay_ms), "--chunk-delay-ms", str(options.chunk_delay_ms)),
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "console.settings"},
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()  # its first line, once it accepts connections
    if not line.startswith("listening on "):
        stop_process(server)
        raise SystemExit(f"the model server did not start: {line!r}")
    return server, line.split()[-1]


def warm_up(timeout_s: float = 120) -> None:
    """The worker consumes (a bare Celery round trip)."""
    from console.celery import app

    assert app.send_task("celery.accumulate", args=[1]).get(timeout=timeout_s) == [1]


def start_all(n: int, tag: str) -> tuple[float, list[int]]:
    from django.db import transaction

    from investigations.intake.services import AlertIn, receive_alert
    from toolserver.lab.estate import demo_alerts

    story = next(alert for alert in demo_alerts() if alert["external_id"] == STORY)
    with transaction.atomic():  # every task is sent on the one commit
        ids = [
            receive_alert(AlertIn(**{**story, "external_id": f"{STORY}-scale-{tag}-{i:04d}"})).investigation.pk
            for i in range(n)
        ]
    return time.time(), ids


def finish_all(ids: list[int], timeout_s: float) -> bool:
    """Wait until all are final; False when the time ran out first."""
    from investigations.models import Investigation

    rows = Investigation.objects.filter(pk__in=ids)
    try:
        wait_until(lambda: not rows.exclude(status__in=Investigation.FINAL).exists(), timeout=timeout_s, interval=0.25)
    except AssertionError:
        return False
    return True


def run_one(n: int, options, env: dict, tag: str, console: int, model: int | None) -> dict:
    from investigations.models import Investigation

    log_path = ROOT / "var" / f"bench-scale-worker-{n}.log"
    worker = start_worker(env, options.pool, options.concurrency, log_path)
    try:
        warm_up()
        # One investigation alone, twice: the first finds the tool servers still starting (the worker warms
        # them as it starts); the second's time is the floor beside the ideal.
        for run in ("cold", "alone"):
            _, (alone_id,) = start_all(1, f"{tag}-{run}")
            finish_all([alone_id], 120)
        alone = Investigation.objects.get(pk=alone_id)
        alone_s = (alone.finished_at - alone.created_at).total_seconds() if alone.finished_at else float("nan")
        with Sampler(worker.pid) as sampler, CpuWindow(worker.pid, console, model) as cpu:
            t0, ids = start_all(n, tag)
            timed_out = not finish_all(ids, options.timeout)
    finally:
        stop_worker(worker)
    done = list(Investigation.objects.filter(pk__in=ids).exclude(finished_at=None))
    per = sorted((row.finished_at - row.created_at).total_seconds() for row in done)
    turns = statistics.median(sum(1 for m in row.messages if m["role"] == "assistant") for row in done) if done else 0
    verdicts = sorted({(row.status, row.verdict) for row in done})
    return {
        "n": n,
        "finished": len(done),
        "timed_out": timed_out,
        "all_s": max(row.finished_at.timestamp() for row in done) - t0 if done else float("nan"),
        "p50_s": statistics.median(per) if per else float("nan"),
        "p99_s": per[min(len(per) - 1, int(len(per) * 0.99))] if per else float("nan"),
        "ideal_s": turns * options.turn_delay_ms / 1000,
        "turns": turns,
        "alone_s": alone_s,
        "rss_mib": sampler.rss / 1024,
        "largest_mib": sampler.largest / 1024,
        "connections": sampler.connections,
        "cpu": cpu.used,
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[4, 50, 200])
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument("--turn-delay-ms", type=int, default=2000)
    parser.add_argument("--chunk-delay-ms", type=int, default=5)
    parser.add_argument("--model", choices=("server", "in-process"), default="server")
    parser.add_argument("--db-pool-size", type=int, default=None, help="GATEHOUSE_DB_POOL_SIZE for the worker")
    parser.add_argument("--timeout", type=float, default=600, help="per N: past it, what finished is reported")
    options = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from investigations.models import Alert, Investigation
    from toolserver.models import ToolServer

    call_command("migrate", verbosity=0)
    call_command("seed_lab", verbosity=0, stdout=io.StringIO())
    credentials = Path(tempfile.mkdtemp(prefix="bench-scale-"))  # mode 0700
    call_command("lab_keys", write_dir=credentials, stdout=io.StringIO())
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.flushdb()
    # The tool servers' rate limits are per deployment; here they would only make the story differ by N.
    ToolServer.objects.update(rate_limit_calls=1_000_000)

    env = console_env(
        GATEHOUSE_CREDENTIALS_DIR=str(credentials),
        GATEHOUSE_OFFLINE_TURN_DELAY_MS=str(options.turn_delay_ms),
        GATEHOUSE_OFFLINE_MODEL_DELAY_MS=str(options.chunk_delay_ms),
    )
    if options.db_pool_size:
        env["GATEHOUSE_DB_POOL_SIZE"] = str(options.db_pool_size)
    tag = uuid.uuid4().hex[:8]
    results, console, model = [], None, None
    load_before = os.getloadavg()[0]
    try:
        console = ConsoleProcess(env)
        worker_env = {**env, "PORT": str(console.port), "GATEHOUSE_LAB_URL": f"{console.url}/lab/api"}
        if options.model == "server":
            model, model_url = start_model_server(env, options)
            worker_env.update(ANTHROPIC_API_KEY="bench-offline-model", ANTHROPIC_BASE_URL=model_url)
        for n in options.n:
            results.append(run_one(n, options, worker_env, f"{tag}-{n}", console.process.pid, model and model.pid))
            print(results[-1], flush=True)
    finally:
        if console is not None:
            console.stop()
        if model is not None:
            stop_process(model)
        alerts = Alert.objects.filter(external_id__startswith=f"{STORY}-scale-{tag}-")
        Investigation.objects.filter(alert__in=alerts).delete()
        alerts.delete()
        store.flushdb()
        shutil.rmtree(credentials, ignore_errors=True)

    print()
    print(
        f"model {options.model}; one worker --pool={options.pool} -c {options.concurrency}, DB pool "
        f"{options.db_pool_size or 'default'}; turn delay {options.turn_delay_ms} ms, chunk delay "
        f"{options.chunk_delay_ms} ms; load {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        "|   N | finished | all done s | p50 s | p99 s | ideal s (turns x delay) | one alone s | all/ideal "
        "| peak RSS MiB (worker and its servers / largest) | peak worker DB conns | worker CPU s (per investigation ms) |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['n']:>3} | {r['finished']:>4}{' (timed out)' if r['timed_out'] else ''} | {r['all_s']:.1f} | "
            f"{r['p50_s']:.1f} | {r['p99_s']:.1f} | {r['ideal_s']:.1f} ({r['turns']:g} x {options.turn_delay_ms / 1000:g}) | {r['alone_s']:.1f} | "
            f"{r['all_s'] / r['ideal_s'] if r['ideal_s'] else float('nan'):.2f} | {r['rss_mib']:.0f} / {r['largest_mib']:.0f} | "
            f"{r['connections']} | {r['cpu']['worker']:.1f} ({1000 * r['cpu']['worker'] / max(1, r['finished']):.0f}) |"
        )
    cores = os.cpu_count()
    print()
    print(f"CPU seconds of each part over the same run; the machine's {cores} cores bound the time at all / {cores}:")
    print(
        "|   N | worker | its tool servers | console (the lab) | model server | rest (PostgreSQL, Redis, ...) "
        "| all | floor s (all / cores) | ideal s |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        used = r["cpu"]
        rest = used["machine"] - sum(value for name, value in used.items() if name != "machine")
        print(
            f"| {r['n']:>3} | {used['worker']:.1f} | {used['tool servers']:.1f} | {used['console']:.1f} | "
            f"{used['model']:.1f} | {rest:.1f} | {used['machine']:.1f} | {used['machine'] / cores:.1f} | {r['ideal_s']:.1f} |"
        )
    print("verdicts:", {r["n"]: r["verdicts"] for r in results})


if __name__ == "__main__":
    main()
