"""Helpers shared by the tests: subprocesses of the real console, free ports, waiting, the lab's stories."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
# Bounds on waits for other threads and processes, generous enough for a 2-core machine that is
# busy with a second test run: a wait that runs out is a failure, never a hang.
WAIT_S = 60  # one step of another thread or process (a barrier, a join, a worker's answer)
READY_S = 180  # a console process from start to answering /healthz (migrations checked, the lab, the worker)
STOP_S = 15  # a process asked to stop, before it is killed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far, all its threads (/proc/<pid>/stat, fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening(port: int) -> bool:
    """Whether a socket listens on `port` (any address, IPv4 or IPv6), read from /proc/net without connecting.

    A readiness probe asks this before it connects: a connect to a port nobody listens on yet may be
    given that same port as its own ephemeral one and connect the socket to itself. It then reads back
    what it sent, and holds the port the server was about to bind."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in rows.readlines()[1:]:
                local, state = row.split()[1:4:2]
                if state == "0A" and int(local.rpartition(":")[2], 16) == port:
                    return True
    return False


def free_port() -> int:
    """A loopback port nobody holds now, for a server a test starts, below the kernel's ephemeral range.

    Between this answer and the server's bind (seconds, for a console) the port is free for anyone. A
    port from bind(0) is in the ephemeral range, where every outgoing connection of the machine (the
    suite's four runs, their databases, their browsers) takes its own port too, and one could take
    this one first: the server then fails to start. Below the range only another run's free_port()
    can, and it picks among thousands at random."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12_000), low)  # noqa: S311 - a spread, not a secret
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not listening(port):  # bound on another address (IPv6, any)
            return port


def database_url_of(settings_dict: dict) -> str:
    """The DATABASE_URL a subprocess needs to use the same database as this test run."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict["USER"]
    return f"postgres://{user}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"


def set_rate_limit(server: str, calls: int, window_s: int = 60) -> None:
    """As an admin sets it (console/manage/administration.py), without the audit record."""
    from toolserver.models import ToolServer

    ToolServer.objects.filter(name=server).update(rate_limit_calls=calls, rate_limit_window_s=window_s)


def console_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # As tests/conftest.py does in this process: a test about the second factor passes them back on.
    env.update(GATEHOUSE_MFA_REQUIRED="false", GATEHOUSE_STEP_UP_MINUTES="0", GATEHOUSE_IDLE_MINUTES="0")
    env.update(overrides)
    return {key: value for key, value in env.items() if value is not None}


def run_manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; a bounded wait for something outside this process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ConsoleProcess:
    """`manage.py serve` in a subprocess: the console as users run it.

    Ready once it answers /healthz with 200 (it listens, and its database, broker and channel layer
    answer). If it does not get there, it is stopped before the error is raised. Use it in a `with`
    block or call stop() in a `finally`/fixture teardown, so a failing test leaves no process behind.
    """

    def __init__(self, env: dict[str, str], *, new_session: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "var" / f"console-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the process writes it until stop() closes it
        self.new_session = new_session
        env = {**env, "PORT": str(self.port)}  # the lab's URL, for its own tool servers, follows the port
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,  # its own process group, to kill it with all it started
        )
        try:
            wait_until(
                self._ready,
                timeout=READY_S,
                interval=0.2,
                what=f"the console on port {self.port} (log: {self.log_path})",
            )
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "ConsoleProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the console exited: {self.log_path.read_text()[-2000:]}")
        if not listening(self.port):
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.process, group=self.new_session)
        self._log.close()


def stop_process(process: subprocess.Popen, *, group: bool = False) -> None:
    """SIGTERM (to its whole process group with `group`: one it started with start_new_session), then
    SIGKILL after STOP_S. A group is killed even when its leader has gone: what it started may outlive it.
    A stopped (SIGSTOPped) process is continued first, so that it can hear the SIGTERM."""

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    if process.poll() is None:
        send(signal.SIGCONT)
        send(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout=STOP_S)
    elif group:
        send(signal.SIGKILL)


def story_alert(external_id: str, **overrides):
    """One of the lab's stories as its SIEM raises it: 1001 phishing, 1002 beacon, 1003 benign."""
    from investigations.intake.services import AlertIn
    from toolserver.lab import estate

    alert = next(alert for alert in estate.demo_alerts() if alert["external_id"] == external_id)
    return AlertIn(**(alert | overrides))


def every_pooled_connection_but_this_threads() -> list:
    """Every connection of the process's pool taken (the caller gives them back), but this thread's own,
    held throughout: the other threads then wait for one as behind hundreds of investigations in flight."""
    from django.db import connection
    from psycopg_pool import PoolTimeout

    connection.ensure_connection()
    taken = []
    while True:
        try:
            taken.append(connection.pool.getconn(timeout=0.2))
        except PoolTimeout:
            return taken


def settings_shown(server: str) -> dict[str, str]:
    """What a server's page shows of its settings now, as its form sends it back (`settings_seen`:
    administration.shown): a save made against it is refused once another admin has changed them."""
    from console.manage import administration
    from toolserver.models import ToolServer

    return {"settings_seen": administration.shown(ToolServer.objects.get(name=server))}


def accept_as_listed(tool, user, **classified) -> None:
    """Accept an external tool's listing (administration.accept_external_tool) as an admin who has just read
    it on its page: what they were shown (`seen`) is what waits now."""
    from console.manage import administration

    administration.accept_external_tool(tool, user, seen=tool.proposed_digest(), **classified)


def page_urls() -> list[str]:
    """Every page of the console (and the API's lists), for every object there is: what the canary
    searches and what the header tests check. A new page belongs here."""
    from django.contrib import admin
    from django.urls import reverse

    from investigations.models import ActionRequest, AuditRecord, Investigation
    from toolserver.lab.models import Ticket
    from toolserver.models import Tool, ToolServer

    urls = [
        reverse(name)
        for name in (
            "home",
            "investigations:list",
            "investigations:approvals",
            "investigations:new_alert",
            "investigations:audit",
            "investigations:audit_digest",
            "manage:index",
            "manage:permissions",
            "manage:people",
            "lab:admin",
            "admin:index",
            "account",
            "password_change",
        )
    ]
    urls += [reverse("investigations:detail", args=[pk]) for pk in Investigation.objects.values_list("pk", flat=True)]
    urls += [
        reverse("investigations:audit_timeline", args=[pk]) for pk in Investigation.objects.values_list("pk", flat=True)
    ]
    urls += [reverse("investigations:action", args=[pk]) for pk in ActionRequest.objects.values_list("pk", flat=True)]
    urls += [
        reverse("investigations:audit_record", args=[seq]) for seq in AuditRecord.objects.values_list("seq", flat=True)
    ]
    urls += [reverse("lab:ticket", args=[number]) for number in Ticket.objects.values_list("number", flat=True)]
    urls += [reverse("manage:server", args=[name]) for name in ToolServer.objects.values_list("name", flat=True)]
    urls += [reverse("manage:tool", args=[name]) for name in Tool.objects.values_list("name", flat=True)]
    urls += [f"{reverse('investigations:audit_export')}?format={fmt}" for fmt in ("csv", "jsonl")]
    urls += ["/api/manage/servers", "/api/audit?limit=500", "/api/actions", "/api/investigations", "/api/audit/digest"]
    urls += [f"/api/audit/export?format={fmt}" for fmt in ("csv", "jsonl")]
    urls += [f"/api/investigations/{pk}" for pk in Investigation.objects.values_list("pk", flat=True)]
    urls += [f"/api/actions/{pk}" for pk in ActionRequest.objects.values_list("pk", flat=True)]
    urls += [f"/api/manage/tools/{name}" for name in Tool.objects.values_list("name", flat=True)]
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls += [reverse(f"{prefix}_changelist")]
        urls += [reverse(f"{prefix}_change", args=[pk]) for pk in model.objects.values_list("pk", flat=True)]
    return urls
