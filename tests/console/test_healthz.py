import json
import shutil
import subprocess

import httpx2 as httpx
import pytest
from django.db import connection

from tests.support import (
    STOP_S,
    ConsoleProcess,
    console_env,
    database_url_of,
    free_port,
    wait_until,
)


@pytest.mark.django_db
async def test_healthz_reports_every_dependency(async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["status"] == "ok" and body["down"] == []
    assert {body[name] for name in ("database", "broker", "channel_layer")} == {"ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_healthz_names_redis_dependencies_when_redis_goes_down(tmp_path):
    """A console whose Redis dies answers 503 and names the broker and the channel layer (not why)."""
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    console = None
    try:
        redis_url = f"redis://127.0.0.1:{port}/0"
        wait_until(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=10).returncode == 0
            )
        )
        console = ConsoleProcess(
            console_env(DATABASE_URL=database_url_of(connection.settings_dict), REDIS_URL=redis_url)
        )
        assert httpx.get(f"{console.url}/healthz").json()["status"] == "ok"

        redis.terminate()
        redis.wait(timeout=10)
        response = httpx.get(f"{console.url}/healthz", timeout=15)
        assert response.status_code == 503
        body = response.json()
        assert body["down"] == ["broker", "channel_layer"]
        assert body["database"] == "ok"
        # Down, and nothing more: no exception class tells a visitor what the console runs on.
        assert (body["broker"], body["channel_layer"]) == ("down", "down")
        assert "Error" not in response.text and "Exception" not in response.text
    finally:
        if console:
            console.stop()
        if redis.poll() is None:
            redis.kill()
            redis.wait(timeout=STOP_S)


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_healthz_answers_200_while_websockets_are_open(make_user):
    """Open sockets keep the channel layer's receive busy; the check's own message still comes back,
    again and again (a check that timed out once used to leave the next ones behind it)."""
    from websockets.sync.client import connect

    from core.roles import ANALYST
    from tests.websockets import cookie_of, signed_in

    cookie = cookie_of(signed_in(make_user("ana", ANALYST))).decode()
    console = ConsoleProcess(console_env(DATABASE_URL=database_url_of(connection.settings_dict)))
    try:
        ws_url = console.url.replace("http://", "ws://")
        headers = {"Cookie": cookie, "Origin": console.url}
        with (
            connect(f"{ws_url}/ws/investigations/", additional_headers=headers, open_timeout=10),
            connect(f"{ws_url}/ws/approvals/", additional_headers=headers, open_timeout=10),
        ):
            for _ in range(5):
                response = httpx.get(f"{console.url}/healthz", timeout=15)
                assert (response.status_code, response.json()["down"]) == (200, [])
    finally:
        console.stop()
