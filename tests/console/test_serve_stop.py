"""`manage.py serve` stops within seconds of SIGTERM, as a container orchestrator expects, and
hands back what its embedded worker was running."""

import signal
import socket
import subprocess
import time

import pytest
from django.conf import settings
from django.db import connection
from websockets.sync.client import connect

from core.roles import ANALYST
from investigations.intake.services import receive_alert
from investigations.models import Investigation
from tests.support import (
    ConsoleProcess,
    console_env,
    database_url_of,
    story_alert,
    wait_until,
)
from tests.websockets import cookie_of, signed_in

STOP_WITHIN_S = 5


def stalled_upload(sock: socket.socket, port: int) -> None:
    """A request in flight that never finishes: its client stops halfway through the body. The
    server's "100 Continue" says the application is waiting for the rest."""
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"POST /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(b'{"source": ')


@pytest.mark.django_db(transaction=True)
def test_serve_exits_within_5_s_of_sigterm_with_sockets_open_and_an_investigation_running(make_user):
    cookie = cookie_of(signed_in(make_user("ana", ANALYST))).decode()
    investigation = receive_alert(story_alert("LAB-SIEM-1001")).investigation
    console = ConsoleProcess(
        console_env(
            DATABASE_URL=database_url_of(connection.settings_dict),
            GATEHOUSE_OFFLINE_MODEL_DELAY_MS="200",  # the model streams for a while: still running when the signal comes
        ),
        new_session=True,
    )
    stalled = socket.socket()
    try:
        ws_url = console.url.replace("http://", "ws://")
        headers = {"Cookie": cookie, "Origin": console.url}
        with (
            connect(f"{ws_url}/ws/investigations/", additional_headers=headers, open_timeout=10),
            connect(f"{ws_url}/ws/investigations/{investigation.pk}/", additional_headers=headers, open_timeout=10),
        ):
            if not settings.PRODUCTION:  # the console's own worker runs it (production: a Celery worker would)
                wait_until(
                    lambda: Investigation.objects.get(pk=investigation.pk).status == "running",
                    timeout=60,
                    what="the embedded worker to start the investigation",
                )
            stalled_upload(stalled, console.port)
            console.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                console.process.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"serve still running {STOP_WITHIN_S} s after SIGTERM: {console.log()[-1500:]}")
            assert time.monotonic() - started < STOP_WITHIN_S
    finally:
        stalled.close()
        console.stop()
    if not settings.PRODUCTION:
        # Handed back: queued for the next worker, from its last saved step, with no lease to wait out.
        investigation.refresh_from_db()
        assert (investigation.status, investigation.lease_owner, investigation.lease_expires_at) == ("queued", "", None)
