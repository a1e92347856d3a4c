"""The tool servers against the lab: real stdio server processes, the lab served by the real
console (`manage.py serve`) on this run's test database."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from tests.toolserver.taxii_server import Medallion
from toolserver.gateway import CallContext, Gateway
from toolserver.supervisor import get_supervisor

MCP_SERVERS = Path(settings.BASE_DIR) / "integrations/mcp-servers/node_modules/@modelcontextprotocol"


@pytest.fixture
def gateway(lab):
    return Gateway()


@pytest.fixture
def taxii_server(tmp_path):
    """A real TAXII 2.1 server (medallion) of this test's own, two objects a page; stopped after it."""
    server = Medallion(tmp_path, page_size=2)
    yield server
    server.stop()


@pytest.fixture
def context():
    # The tool layer's own tests act as an approved action would: writes carry an approval.
    return CallContext(correlation_id="inv-test-1", trigger="alert-test-1", approval="test-approval")


def mcp_server_js(package: str) -> Path:
    """The entry point of a third-party MCP server that `make mcp-servers` installs (server-memory, ...)."""
    return MCP_SERVERS / package / "dist/index.js"


@pytest.fixture
def register_node_server(admin_user):
    """Register a third-party MCP server run as `node <its entry point> <args>` over stdio, as an admin
    does; each one's process is stopped after the test."""
    from console.manage import administration

    registered = []

    def register(name: str, package: str, args: tuple[str, ...] = (), **fields):
        script = mcp_server_js(package)
        if not script.exists() or shutil.which("node") is None:
            pytest.fail(f"{package} is not installed: run `make mcp-servers` (npm ci in integrations/mcp-servers)")
        server = administration.register_external_server(
            admin_user, {"name": name, "command": "node", "args": [str(script), *args], **fields}
        )
        registered.append(name)
        return server

    yield register
    for name in registered:
        get_supervisor().restart(name)


def server_pids(server: str, parent: int | None = None) -> list[int]:
    """Pids of this process's (or `parent`'s) children running `server` (read from /proc)."""
    me, found = parent or os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            environ = read_environ(int(entry))
        except (OSError, ValueError):
            continue
        if environ.get("GATEHOUSE_SERVER") == server:
            found.append(int(entry))
    return found


def children(parent: int) -> list[int]:
    """Pids of `parent`'s live children (read from /proc; a zombie is not alive)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                state, ppid = stat.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == parent and state != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def launched_pids(server: str, marker: str) -> list[int]:
    """An external server's processes whose command line holds `marker` (its script or program): children
    of this process's relays for `server` (the launcher stays as their parent)."""
    found = []
    for relay in server_pids(server):
        for pid in children(relay):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    argv = cmdline.read().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv:
                found.append(pid)
    return found


def read_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [item.decode().split("=", 1) for item in handle.read().split(b"\0") if b"=" in item]
    return dict(pairs)
