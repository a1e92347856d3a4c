"""Issue 13 item 3: a tool server dies with the worker that started it.

A real worker (`celery worker` in production mode, the console's in-process worker on the embedded
default) runs an investigation whose host look-up hangs at the lab; the worker is SIGKILLed with
its process group. Its tool servers must be gone at once: before, they lived in sessions of their
own and survived, and one finished an isolation after its worker was dead.

A server notices its worker's death on its own only when it next reads its stdin (end of file);
one busy in a blocking backend call does not. The test stops the servers (SIGSTOP) before the
kill to stand for that: only the kernel (PR_SET_PDEATHSIG) then ends them.
"""

import os
import signal

import pytest
import redis
from django.conf import settings

from investigations.intake.services import receive_alert
from tests.investigations.workers import WorkerProcess, worker_env
from tests.support import story_alert, wait_until
from tests.toolserver.conftest import read_environ
from toolserver.lab import faults
from toolserver.lab.models import LabFault

pytestmark = pytest.mark.django_db(transaction=True)


def descendants(root: int) -> list[int]:
    """Pids of live processes under `root` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie is dead, awaiting its reaper
    except FileNotFoundError:
        return False


def tool_servers(root: int) -> list[int]:
    servers = []
    for pid in descendants(root):
        try:
            if read_environ(pid).get("GATEHOUSE_SERVER"):
                servers.append(pid)
        except OSError:
            continue
    return servers


def test_a_killed_worker_takes_its_tool_servers_with_it(lab, tmp_path, settings_offline):
    if settings.PRODUCTION:  # tasks left by other tests' in-process runs are not this test's business
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    faults.inject("edr", "slow", delay_ms=60_000, remaining=1)  # get_host hangs at the lab ...
    worker = WorkerProcess(
        worker_env(lab, GATEHOUSE_BACKEND_TIMEOUT_S="90"), tmp_path
    ).start()  # ... and its server waits
    servers = []
    try:
        receive_alert(story_alert("LAB-SIEM-1001"))
        wait_until(
            LabFault.objects.filter(backend="edr", applied=1).exists, timeout=120, what="get_host to reach the lab"
        )
        servers = tool_servers(worker.process.pid)
        assert len(servers) >= 3, servers  # siem, identity and edr at least
        for pid in servers:
            os.kill(pid, signal.SIGSTOP)  # not reading their stdin, as in a blocking call
        worker.kill()
        wait_until(
            lambda: not any(alive(pid) for pid in servers),
            timeout=10,
            what=f"the worker's tool servers {[pid for pid in servers if alive(pid)]} to die with it",
        )
    finally:
        worker.stop()
        for pid in filter(alive, servers):
            os.kill(pid, signal.SIGKILL)
