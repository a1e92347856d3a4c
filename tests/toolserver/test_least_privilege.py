"""Rule 1: each server process holds its own credential and no other; the model's process none."""

import os
from pathlib import Path

import httpx2
import pytest

from tests.toolserver.conftest import read_environ, server_pids
from toolserver.catalog import SERVERS
from toolserver.lab import estate
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_NAMES = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONPATH",
    "LOGNAME",
    "USER",
    "SHELL",
    "TERM",
    "GATEHOUSE_SERVER",
    "GATEHOUSE_ADAPTER",
    "GATEHOUSE_BACKEND_URL",
    "GATEHOUSE_BACKEND_TIMEOUT_S",
    "GATEHOUSE_BACKEND_KEY",
    "GATEHOUSE_BACKEND_ALLOWED_HOSTS",
    "GATEHOUSE_BACKEND_PARAMS",
    "GATEHOUSE_BACKEND_SECRET_PARAMS",  # its adapter's parameters, when it declares any
}


def test_each_server_process_holds_its_own_credential_and_no_other(lab):
    supervisor = get_supervisor()
    for server in SERVERS:
        supervisor.list_tools(server)  # make sure it runs
        (pid,) = server_pids(server)
        environ = read_environ(pid)
        assert environ["GATEHOUSE_BACKEND_KEY"] == lab.keys[server]
        assert environ["GATEHOUSE_BACKEND_URL"] == lab.api_url
        assert set(environ) <= ALLOWED_NAMES, set(environ) - ALLOWED_NAMES
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
        for other, key in lab.keys.items():
            if other != server:
                assert key not in raw, f"{server} holds {other}'s credential"
        for secret_setting in ("DATABASE_URL", "REDIS_URL", "GATEHOUSE_SECRET_KEY", "GATEHOUSE_AUDIT_HASH_KEY"):
            assert secret_setting not in environ


def test_the_process_that_runs_the_model_holds_no_backend_credential(lab):
    get_supervisor().list_tools("edr-response")
    own = Path(f"/proc/{os.getpid()}/environ").read_bytes().decode()
    assert not [server for server, key in lab.keys.items() if key in own or key in str(os.environ)]


def test_the_siem_key_cannot_isolate_a_host(lab):
    response = httpx2.post(
        f"{lab.api_url}/edr/hosts/{estate.PHISHED_HOST}/isolate",
        json={"reason": "trying with the wrong key"},
        headers={"Authorization": f"Bearer {lab.keys['siem']}"},
    )
    assert response.status_code == 403
    assert lab.keys["siem"] not in response.text


def test_the_edr_response_key_cannot_read_the_siem(lab):
    response = httpx2.get(
        f"{lab.api_url}/siem/logins",
        params={"user": estate.PHISHED_USER},
        headers={"Authorization": f"Bearer {lab.keys['edr-response']}"},
    )
    assert response.status_code == 403
