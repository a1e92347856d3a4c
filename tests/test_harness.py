"""The suite's own harness: a console process that does not become ready in time is stopped, not left behind."""

from pathlib import Path

import pytest
from django.db import connection

from tests import support


def consoles_running() -> set[int]:
    """Pids of `manage.py serve` processes of this checkout."""
    manage = str(support.ROOT / "manage.py").encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if manage in cmdline and b"serve" in cmdline:
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
