"""Per-call cost of the full tool stack against the lab, beside a bare mcp echo over stdio; and of
an external MCP server (server-memory over stdio, `make mcp-servers`) through the gateway, beside
a bare call to the same server.

Full stack: gateway -> strict validation -> rate limit -> stdio to the edr server process ->
lab HTTP API (served by `manage.py serve`) -> envelope -> audit record written.
Baseline: an mcp echo tool over stdio, same client library, same machine, same run.

    .venv/bin/python bench/toolcall.py [--calls 300]

Runs on the embedded default in a scratch data folder (var/bench-toolcall), or in production
mode when DATABASE_URL and REDIS_URL are set.
"""

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
if not os.environ.get("REDIS_URL"):
    os.environ["GATEHOUSE_DATA_DIR"] = str(ROOT / "var" / "bench-toolcall")


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def echo_latencies(calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(ROOT / "bench" / "echo_server.py")])
    samples = []
    async with Client(stdio_client(params, errlog=sys.stderr)) as client:
        for _ in range(20):  # warm up
            await client.call_tool("echo", {"text": "warm"})
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool("echo", {"text": "hello"})
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--port", type=int, default=8765)
    calls = parser.parse_args().calls
    port = parser.parse_args().port

    credentials = ROOT / "var" / "bench-toolcall-credentials"
    os.environ["GATEHOUSE_LAB_URL"] = f"http://127.0.0.1:{port}/lab/api"
    os.environ["GATEHOUSE_CREDENTIALS_DIR"] = str(credentials)
    os.environ["GATEHOUSE_LAB"] = "true"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_lab", verbosity=0, stdout=io.StringIO())
    call_command("lab_keys", write_dir=credentials, stdout=io.StringIO())
    from toolserver.models import Credential, ToolServer

    ToolServer.objects.filter(name="edr").update(rate_limit_calls=calls * 10, rate_limit_window_s=60)
    Credential.objects.filter(server__name="edr").delete()  # a previous run's: this run issued new keys

    console = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "GATEHOUSE_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
    )
    try:
        from investigations.models import AuditRecord
        from toolserver.gateway import CallContext, Gateway

        gateway, context = Gateway(), CallContext("bench", "bench-alert", approval="bench-approval")
        deadline = time.monotonic() + 30
        while gateway.call("get_host", {"host": "WS-FIN-07"}, context)["status"] != "ok":
            if time.monotonic() > deadline:
                raise SystemExit("the lab did not answer")
            time.sleep(0.2)
        for _ in range(20):
            gateway.call("get_host", {"host": "WS-FIN-07"}, context)
        before = AuditRecord.objects.count()
        full = []
        for _ in range(calls):
            started = time.perf_counter()
            result = gateway.call("get_host", {"host": "WS-FIN-07"}, context)
            full.append((time.perf_counter() - started) * 1000)
            assert result["status"] == "ok", result
        assert AuditRecord.objects.count() - before == calls
        rotation = rotation_timings(gateway, context, (credentials / "edr.key").read_text())
    finally:
        console.terminate()
        console.wait(timeout=10)

    external_full = external_latencies(calls)
    external_bare = asyncio.run(bare_memory_latencies(calls)) if external_full else []
    bare = asyncio.run(echo_latencies(calls))
    full_p50, full_p99 = percentiles(full)
    bare_p50, bare_p99 = percentiles(bare)
    mode = "production (PostgreSQL, Redis)" if settings.PRODUCTION else "embedded default (SQLite, in-process limiter)"
    print(f"tool call latency, {calls} calls each, {mode}")
    print(f"  full stack get_host against the lab   p50 {full_p50:7.2f} ms   p99 {full_p99:7.2f} ms")
    print(f"  bare mcp echo over stdio              p50 {bare_p50:7.2f} ms   p99 {bare_p99:7.2f} ms")
    print(
        f"  ratio full/bare                       p50 {full_p50 / bare_p50:7.1f} x    p99 {full_p99 / bare_p99:7.1f} x"
    )
    if external_full:
        ext_p50, ext_p99 = percentiles(external_full)
        raw_p50, raw_p99 = percentiles(external_bare)
        print(f"external MCP server (server-memory read_graph over stdio), {calls} calls each")
        print(f"  through the gateway                   p50 {ext_p50:7.2f} ms   p99 {ext_p99:7.2f} ms")
        print(f"  bare call to the same server          p50 {raw_p50:7.2f} ms   p99 {raw_p99:7.2f} ms")
        print(
            f"  ratio gateway/bare                    p50 {ext_p50 / raw_p50:7.1f} x    p99 {ext_p99 / raw_p99:7.1f} x"
        )
    else:
        print("external MCP server: skipped (run `make mcp-servers` to install server-memory)")
    stopped, first_call = (statistics.median(samples) for samples in zip(*rotation, strict=True))
    print(f"credential rotation (admin sets it, sealed), median of {len(rotation)}:")
    print(f"  until the old server process is gone   {stopped:7.1f} ms")
    print(f"  then the first call on the new one     {first_call:7.1f} ms (a new process starts)")


def bench_admin():
    """Who sets the credentials and registers the server: the admin role (administration refuses anyone else)."""
    from django.contrib.auth.models import Group, User

    from core.roles import ADMIN

    admin, _ = User.objects.get_or_create(username="bench-admin")
    admin.groups.add(Group.objects.get(name=ADMIN))
    return admin


MEMORY_JS = ROOT / "integrations/mcp-servers/node_modules/@modelcontextprotocol/server-memory/dist/index.js"


def external_latencies(calls: int) -> list[float]:
    """server-memory registered, discovered and its read_graph accepted as a read, then called through the gateway."""
    if not MEMORY_JS.exists():
        return []
    from console.manage import administration
    from toolserver.gateway import CallContext, Gateway
    from toolserver.models import Tool, ToolServer

    admin = bench_admin()
    server = ToolServer.objects.filter(name="bench-memory").first() or administration.register_external_server(
        admin,
        {
            "name": "bench-memory",
            "command": "node",
            "args": [str(MEMORY_JS)],
            "env": {"MEMORY_FILE_PATH": str(ROOT / "var" / "bench-memory.jsonl")},
            "rate_limit_calls": calls * 10,
        },
    )
    administration.discover(server)
    tool = Tool.objects.get(name="bench-memory__read_graph")
    if tool.proposed is not None:
        administration.accept_external_tool(tool, admin, access="read")
    gateway, context = Gateway(), CallContext("bench", "bench-alert")
    for _ in range(20):
        assert gateway.call("bench-memory__read_graph", {}, context)["status"] == "ok"
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = gateway.call("bench-memory__read_graph", {}, context)
        samples.append((time.perf_counter() - started) * 1000)
        assert result["status"] == "ok", result
    return samples


async def bare_memory_latencies(calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command="node", args=[str(MEMORY_JS)], env={"MEMORY_FILE_PATH": str(ROOT / "var" / "bench-memory.jsonl")}
    )
    samples = []
    async with Client(stdio_client(params, errlog=sys.stderr)) as client:
        for _ in range(20):
            await client.call_tool("read_graph", {})
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool("read_graph", {})
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def rotation_timings(gateway, context, secret: str, rounds: int = 5) -> list[tuple[float, float]]:
    """(ms until set_credential returns with the old process stopped, ms of the next call)."""
    from console.manage import administration
    from toolserver.models import ToolServer

    admin = bench_admin()
    server = ToolServer.objects.get(name="edr")
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        administration.set_credential(server, admin, secret=secret)
        stopped = time.perf_counter()
        assert gateway.call("get_host", {"host": "WS-FIN-07"}, context)["status"] == "ok"
        timings.append(((stopped - started) * 1000, (time.perf_counter() - stopped) * 1000))
    return timings


if __name__ == "__main__":
    main()
