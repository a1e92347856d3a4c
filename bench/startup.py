"""Start-up times beside their floors (issue 20): the console, and a tool server's first call.

Console: `manage.py serve` spawned, until /healthz first answers 200 (floor 3 s, idle machine).
Tool server: `python -m toolserver.launch` spawned as the supervisor spawns it, MCP initialize,
then one read (get_host) on the lab, until its answer (floor 1 s).
Beside each, the CPU seconds the start took (the console's process until its first 200; the
launcher and server until the session closed): on a machine busy with other work, the wall time
is not the idle figure, and the CPU time is close to it.

    .venv/bin/python bench/startup.py [--runs 7]

Runs on the embedded default in a scratch data folder (var/bench-startup), or in production
mode when DATABASE_URL and REDIS_URL are set. The lab the tool server reads is served by one
more console, started once and not timed; on the embedded default the servers are timed once that
console's worker has started its own (var/bench-startup-lab.log), not while they share the cores.
"""

import argparse
import asyncio
import contextlib
import io
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import cpu_seconds  # noqa: E402  (no Django imports)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
if not os.environ.get("REDIS_URL"):
    os.environ["GATEHOUSE_DATA_DIR"] = str(ROOT / "var" / "bench-startup")
CONSOLE_FLOOR_S = 3.0
FIRST_CALL_FLOOR_S = 1.0
BOUND_S = 120  # one start, before the bench gives up


def spawn_console(port: int, log: Path | None = None) -> subprocess.Popen:
    """A console; with `log`, its log (at INFO) goes there."""
    with log.open("w") if log else contextlib.nullcontext() as stderr:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "GATEHOUSE_LOG_LEVEL": "INFO" if log else "WARNING", "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def until(console: subprocess.Popen, ready, what: str) -> None:
    """Until `ready()`; the console exiting first, or BOUND_S passing, ends the bench, naming `what`."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if console.poll() is not None:
            raise SystemExit(f"the console exited ({console.returncode}) before {what}")
        if ready():
            return
        time.sleep(0.02)
    raise SystemExit(f"waited {BOUND_S} s for {what}")


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def until_healthy(console: subprocess.Popen, port: int) -> None:
    until(console, lambda: healthy(port), "a /healthz 200")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def console_start_s(port: int) -> tuple[float, float]:
    """(wall, CPU) seconds from spawn to the first /healthz 200."""
    started = time.perf_counter()
    console = spawn_console(port)
    try:
        until_healthy(console, port)
        return time.perf_counter() - started, cpu_seconds(console.pid)
    finally:
        stop(console)


async def first_call_s(config) -> tuple[float, float]:
    """Spawn, initialize, one read on the lab: as the supervisor's first call on a server."""
    from mcp import Client, StdioServerParameters, stdio_client

    from toolserver.launch import PARENT_VARIABLE

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "toolserver.launch"],
        env=config.environment() | {PARENT_VARIABLE: str(os.getpid())},
        cwd=str(ROOT),
    )
    started, cpu_before = time.perf_counter(), children_cpu_s()
    async with asyncio.timeout(BOUND_S), Client(stdio_client(params, errlog=sys.stderr)) as client:
        result = await client.call_tool("get_host", {"host": "WS-FIN-07"}, meta={"gatehouse/correlation_id": "bench"})
        elapsed = time.perf_counter() - started
    assert result.structured_content["status"] == "ok", result.structured_content
    return elapsed, children_cpu_s() - cpu_before  # the server, reaped when its session closed


def summary(samples: list[tuple[float, float]]) -> str:
    ordered = sorted(wall for wall, _ in samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    cpu = statistics.median(cpu for _, cpu in samples)
    return (
        f"min {ordered[0]:6.2f} s   median {statistics.median(ordered):6.2f} s   p90 {p90:6.2f} s"
        f"   (CPU median {cpu:5.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--port", type=int, default=8766)
    options = parser.parse_args()
    lab_port, timed_port = options.port, options.port + 1

    credentials = ROOT / "var" / "bench-startup-credentials"
    os.environ["GATEHOUSE_LAB_URL"] = f"http://127.0.0.1:{lab_port}/lab/api"
    os.environ["GATEHOUSE_CREDENTIALS_DIR"] = str(credentials)
    os.environ["GATEHOUSE_LAB"] = "true"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_lab", verbosity=0, stdout=io.StringIO())
    call_command("lab_keys", write_dir=credentials, stdout=io.StringIO())
    from toolserver.models import Credential
    from toolserver.supervisor import launch_config

    Credential.objects.filter(server__name="edr").delete()  # a previous run's: this run issued new keys

    consoles = [console_start_s(timed_port) for _ in range(options.runs)]
    lab_log = ROOT / "var" / "bench-startup-lab.log"
    lab = spawn_console(lab_port, lab_log)
    try:
        until_healthy(lab, lab_port)
        if not settings.PRODUCTION:
            # Its worker runs in it and starts its own servers as it starts, which would share the cores
            # with the server timed (the first call took 2.3 s, the rest 0.8 s): until its log says they
            # are up (toolserver.supervisor's warm()).
            until(
                lab,
                lambda: "tool servers warm:" in lab_log.read_text(errors="replace"),
                "the log's 'tool servers warm'",
            )
        config = launch_config("edr")
        calls = [asyncio.run(first_call_s(config)) for _ in range(options.runs)]
    finally:
        stop(lab)

    mode = "production (PostgreSQL, Redis)" if settings.PRODUCTION else "embedded default (SQLite, worker in-process)"
    print(f"start-up, {options.runs} runs each, {mode}, load average {os.getloadavg()[0]:.1f}")
    print(f"  console: spawn to first /healthz 200       {summary(consoles)}   floor {CONSOLE_FLOOR_S:.0f} s")
    print(f"  tool server: spawn to first call answered  {summary(calls)}   floor {FIRST_CALL_FLOOR_S:.0f} s")


if __name__ == "__main__":
    main()
