"""Per-call cost of the full tool stack against the lab, beside a bare mcp echo over stdio; against
a real directory, beside a bare ldap3 search of it; and of an external MCP server (server-memory
over stdio, `make mcp-servers`) through the gateway, beside a bare call to the same server.

Full stack: gateway -> strict validation -> rate limit -> stdio to the edr server process ->
lab HTTP API (served by `manage.py serve`) -> envelope -> audit record written.
Baseline: an mcp echo tool over stdio, same client library, same machine, same run.

LDAP: get_user through the same stack to the identity server on the `ldap` adapter, against a
real OpenLDAP slapd started here as the tests start one (tests/toolserver/slapd.py), beside bare
ldap3 on the same slapd and user in the same run: bind, search, unbind on a new connection (what
the adapter does per call, its floor), and a search on a connection already bound.

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

    ldap_full, ldap_bare, ldap_open = ldap_timings(calls)
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
    print_case(
        f"get_user through the gateway, identity on ldap, against slapd ({calls} calls each)",
        [
            ("full stack get_user (ldap adapter)", ldap_full),
            ("floor: bare ldap3 bind+search+unbind", ldap_bare),
            ("bare ldap3 search, connection open", ldap_open),
        ],
    )
    if external_full:
        print_case(
            f"external MCP server: server-memory read_graph over stdio ({calls} calls each)",
            [("through the gateway", external_full), ("bare call to the same server", external_bare)],
        )
    else:
        print("external MCP server: skipped (run `make mcp-servers` to install server-memory)")
    stopped, first_call = (statistics.median(samples) for samples in zip(*rotation, strict=True))
    print(f"credential rotation (admin sets it, sealed), median of {len(rotation)}:")
    print(f"  until the old server process is gone   {stopped:7.1f} ms")
    print(f"  then the first call on the new one     {first_call:7.1f} ms (a new process starts)")


def print_case(title: str, rows: list[tuple[str, list[float]]]) -> None:
    """Each row's p50/p99, and the first row over the second (its floor)."""
    print(title)
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"  {label:<38}p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    (full_p50, full_p99), (floor_p50, floor_p99) = percentiles(rows[0][1]), percentiles(rows[1][1])
    print(f"  {'ratio full/floor':<38}p50 {full_p50 / floor_p50:7.1f} x    p99 {full_p99 / floor_p99:7.1f} x")


def ldap_timings(calls: int) -> tuple[list[float], list[float], list[float]]:
    """(full stack get_user, bare bind+search+unbind, bare search on an open connection) against one slapd."""
    import tempfile

    from django.conf import settings
    from ldap3 import NONE, SUBTREE, Connection, Server

    from console.manage import administration
    from investigations.models import AuditRecord
    from tests.toolserver.slapd import PEOPLE, SERVICE_DN, Slapd
    from toolserver.gateway import CallContext, Gateway
    from toolserver.models import ToolServer

    admin = bench_admin()
    with tempfile.TemporaryDirectory(prefix="bench-slapd-") as folder:
        slapd = Slapd(Path(folder))
        try:
            settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{slapd.port}"]
            identity = ToolServer.objects.get(name="identity")
            identity.rate_limit_calls, identity.rate_limit_window_s = calls * 10, 60
            identity.save(update_fields=["rate_limit_calls", "rate_limit_window_s"])
            administration.update_server(
                identity, admin, {"adapter": "ldap", "url": slapd.url, "params": slapd.params()}
            )
            administration.set_credential(identity, admin, secret=slapd.service_password)
            gateway, context = Gateway(), CallContext("bench-ldap", "bench-ldap-alert")
            for _ in range(20):  # warm up: the server process starts on the first call
                assert gateway.call("get_user", {"username": "j.doe"}, context)["status"] == "ok"
            before = AuditRecord.objects.count()
            full = []
            for _ in range(calls):
                started = time.perf_counter()
                result = gateway.call("get_user", {"username": "j.doe"}, context)
                full.append((time.perf_counter() - started) * 1000)
                assert result["status"] == "ok", result
            assert AuditRecord.objects.count() - before == calls

            server = Server(slapd.url, get_info=NONE)

            def search(connection: Connection) -> None:
                assert connection.search(PEOPLE, "(uid=j.doe)", SUBTREE, attributes=["*", "pwdAccountLockedTime"])
                assert len(connection.entries) == 1

            bare = []
            for _ in range(calls):
                started = time.perf_counter()
                connection = Connection(server, SERVICE_DN, slapd.service_password, receive_timeout=5)
                assert connection.bind()
                search(connection)
                connection.unbind()
                bare.append((time.perf_counter() - started) * 1000)
            connection = Connection(server, SERVICE_DN, slapd.service_password, receive_timeout=5)
            assert connection.bind()
            opened = []
            for _ in range(calls):
                started = time.perf_counter()
                search(connection)
                opened.append((time.perf_counter() - started) * 1000)
            connection.unbind()
        finally:
            slapd.stop()
            lab = ToolServer.objects.get(name="identity")
            administration.update_server(lab, admin, {"adapter": "lab", "url": "", "params": {}})
    return full, bare, opened


def bench_admin():
    """The admin the bench acts as: only admins point a server elsewhere or set its credential."""
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
        administration.accept_external_tool(tool, admin, seen=tool.proposed_digest(), access="read")
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
