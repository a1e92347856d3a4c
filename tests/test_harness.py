"""The suite's own harness: a console process that does not become ready in time is stopped, not left
behind; a test server's port is one no outgoing connection can take first."""

import os
import socket
from pathlib import Path

import pytest
from django.db import connection

from tests import support


def consoles_running() -> set[int]:
    """Pids of `manage.py serve` processes of this checkout started by this test run (the other runs
    of `make test`, side by side, start and stop their own)."""
    manage = str(support.ROOT / "manage.py").encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        if manage in cmdline and b"serve" in cmdline and parent == os.getpid():
            pids.add(int(entry.name))
    return pids


@pytest.mark.django_db(transaction=True)
def test_a_console_that_is_not_ready_in_time_is_stopped(monkeypatch):
    before = consoles_running()
    monkeypatch.setattr(support, "READY_S", 0.01)  # far shorter than any console takes to start
    with pytest.raises(AssertionError, match="timed out"):
        support.ConsoleProcess(
            support.console_env(DATABASE_URL=support.database_url_of(connection.settings_dict)), new_session=True
        )
    assert consoles_running() == before


def test_a_servers_port_is_free_and_outside_the_range_outgoing_connections_take_theirs():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {support.free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports), ports
    assert len(ports) > 1  # picked at random: two runs starting servers at once rarely meet
    for port in ports:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # free: a server binds it
