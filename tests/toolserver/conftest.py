"""The tool servers against the lab: real stdio server processes, the lab served by the real
console (`manage.py serve`) on this run's test database."""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolserver.catalog import SERVERS
from toolserver.gateway import CallContext, Gateway
from toolserver.ratelimit import get_rate_limiter


@dataclass
class Lab:
    api_url: str
    credentials_dir: Path
    keys: dict[str, str]

    def environment(self) -> dict[str, str]:
        """What a separate worker process needs to reach this lab with these credentials."""
        return {"GATEHOUSE_LAB_URL": self.api_url, "GATEHOUSE_CREDENTIALS_DIR": str(self.credentials_dir)}


@pytest.fixture(scope="session")
def lab_credentials(tmp_path_factory):
    """One key per server for the whole run, written where each server's launcher reads it.

    Fixed for the session, so the long-lived server processes survive from test to test.
    """
    directory = tmp_path_factory.mktemp("credentials")
    directory.chmod(0o700)
    keys = {server: f"lab_test_{server}_{secrets.token_urlsafe(24)}" for server in SERVERS}
    for server, key in keys.items():
        path = directory / f"{server}.key"
        path.write_text(key)
        path.chmod(0o600)
    return directory, keys


@pytest.fixture
def lab(transactional_db, live_console, lab_credentials, settings):
    from toolserver.lab import estate, faults
    from toolserver.lab.keys import SERVER_SCOPES, hash_key
    from toolserver.lab.models import LabKey

    directory, keys = lab_credentials
    estate.seed()
    for server, key in keys.items():
        LabKey.objects.create(name=server, key_hash=hash_key(key), scopes=SERVER_SCOPES[server])
    lab = Lab(api_url=f"{live_console.url}/lab/api", credentials_dir=directory, keys=keys)
    settings.TOOLSERVER_BACKENDS = {
        server: {"adapter": "lab", "url": lab.api_url, "credential": f"file:{directory / (server + '.key')}"}
        for server in SERVERS
    }
    settings.BACKEND_TIMEOUT_S = 2  # a lab "timeout" fault outlasts it
    limiter = get_rate_limiter()
    for server in SERVERS:
        limiter.reset(server)
    yield lab
    faults.clear()


@pytest.fixture
def gateway(lab):
    return Gateway()


@pytest.fixture
def context():
    return CallContext(correlation_id="inv-test-1", trigger="alert-test-1")


def server_pids(server: str) -> list[int]:
    """Pids of this process's children running `server` (read from /proc)."""
    me, found = os.getpid(), []
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


def read_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [item.decode().split("=", 1) for item in handle.read().split(b"\0") if b"=" in item]
    return dict(pairs)
