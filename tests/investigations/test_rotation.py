"""A credential rotated mid-run: the old server process stops at once, the next isolation uses the new key."""

import asyncio

import httpx2
import pytest

from console.manage import administration
from investigations.approvals import services as approvals
from tests.support import wait_until
from tests.toolserver.conftest import read_environ, server_pids
from toolserver.lab import estate
from toolserver.lab.keys import SERVER_SCOPES, issue_key, revoke_key
from toolserver.lab.models import LabWrite
from toolserver.models import ToolServer
from toolserver.supervisor import get_supervisor, restart_channel

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_isolation_after_a_rotation_uses_the_new_key_and_the_old_one_is_refused_once_revoked(
    waiting, lab, analyst, admin_user
):
    _, request = waiting  # suspended on isolate_host WS-FIN-07, on the deployment's key
    old = lab.keys["edr-response"]
    get_supervisor().list_tools("edr-response")
    (holder,) = server_pids("edr-response")
    assert read_environ(holder)["GATEHOUSE_BACKEND_KEY"] == old

    # The EDR issues a second key; the admin sets it in the console, mid-run.
    rotated = issue_key("edr-response-rotated", SERVER_SCOPES["edr-response"])
    administration.set_credential(ToolServer.objects.get(name="edr-response"), admin_user, secret=rotated)
    assert server_pids("edr-response") == []  # the process holding the old key is gone at once

    approvals.approve(request.pk, analyst)
    approvals.execute(request.pk)
    request.refresh_from_db()
    assert request.state == "succeeded"
    (isolation,) = LabWrite.objects.filter(action="isolate_host")
    assert (isolation.key_name, isolation.outcome) == ("edr-response-rotated", "performed")  # the lab saw the new key
    (process,) = server_pids("edr-response")
    assert read_environ(process)["GATEHOUSE_BACKEND_KEY"] == rotated
    assert not any(old in value for value in read_environ(process).values())

    # The EDR still accepts the old key until it is revoked there; then it refuses it.
    health = f"{lab.api_url}/health"
    assert httpx2.get(health, headers={"Authorization": f"Bearer {old}"}).json()["key"] == "edr-response"
    assert revoke_key("edr-response") == 1
    assert httpx2.get(health, headers={"Authorization": f"Bearer {old}"}).status_code == 401
    refused = httpx2.post(
        f"{lab.api_url}/edr/hosts/{estate.BEACON_HOST}/isolate",
        json={"reason": "with the old key"},
        headers={"Authorization": f"Bearer {old}", "Idempotency-Key": "rotation-test"},
    )
    assert refused.status_code == 401
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1


@pytest.mark.production
def test_a_rotation_announced_by_another_process_stops_this_processs_server(lab, settings):
    """Production: the web process publishes the restart; every worker's supervisor hears it."""
    import redis

    get_supervisor().list_tools("intel")
    (before,) = server_pids("intel")
    redis.Redis.from_url(settings.REDIS_URL).publish(restart_channel(settings.REDIS_URL), "intel")
    wait_until(lambda: before not in server_pids("intel"), what="the intel server to stop")
    get_supervisor().list_tools("intel")  # the next use starts a new one
    (after,) = server_pids("intel")
    assert after != before


def test_a_use_while_the_server_is_being_stopped_gets_a_new_process(lab):
    """A restart in flight (an announcement, a rotation) never hands its closing session to a caller."""
    supervisor = get_supervisor()
    supervisor.list_tools("intel")
    (before,) = server_pids("intel")
    # Submitted first, the stop runs on the supervisor's loop up to its first wait before the listing starts.
    stopping = asyncio.run_coroutine_threadsafe(supervisor._stop_server("intel"), supervisor._loop)
    assert {tool["name"] for tool in supervisor.list_tools("intel")} >= {"lookup_indicator"}
    stopping.result(timeout=15)
    (after,) = server_pids("intel")
    assert after != before
