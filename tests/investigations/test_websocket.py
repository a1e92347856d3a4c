"""The investigation websockets through the real ASGI application: who may listen, backlog then live."""

import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from guardian.shortcuts import assign_perm

from investigations.events import record_event

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1")


def session_of(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def socket(path: str, user=None, origin=ORIGIN) -> WebsocketCommunicator:
    from console.asgi import application  # its start-up checks reach the database: not at collection

    headers = [origin] + ([(b"cookie", await database_sync_to_async(session_of)(user))] if user else [])
    return WebsocketCommunicator(application, path, headers=headers)


async def refused(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return not connected


@pytest.fixture
def investigation(make_investigation):
    investigation = make_investigation()
    for n in range(3):
        record_event(investigation.pk, "text", {"text": f"chunk {n + 1}", "block": "1.0"})
    return investigation


async def test_anonymous_users_are_refused(investigation):
    assert await refused(await socket(f"/ws/investigations/{investigation.pk}/"))
    assert await refused(await socket("/ws/investigations/"))


async def test_users_without_permission_are_refused(investigation, make_user):
    nobody = await database_sync_to_async(make_user)("nobody")
    admin = await database_sync_to_async(make_user)("root-of-tools", "admin")
    assert await refused(await socket(f"/ws/investigations/{investigation.pk}/", nobody))
    assert await refused(await socket(f"/ws/investigations/{investigation.pk}/", admin))


async def test_a_foreign_origin_is_refused_even_with_a_valid_session(investigation, analyst):
    evil = (b"origin", b"https://evil.example")
    assert await refused(await socket(f"/ws/investigations/{investigation.pk}/", analyst, origin=evil))


async def test_an_unknown_investigation_is_refused(analyst):
    assert await refused(await socket("/ws/investigations/999999/", analyst))


async def test_the_backlog_after_a_seq_then_live_events_each_once_in_order(investigation, analyst):
    communicator = await socket(f"/ws/investigations/{investigation.pk}/?after=1", analyst)
    connected, _ = await communicator.connect()
    assert connected
    backlog = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert [(m["event"]["seq"], m["event"]["data"]["text"]) for m in backlog] == [(2, "chunk 2"), (3, "chunk 3")]
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": "Live."})
    live = await communicator.receive_json_from(timeout=5)
    assert (live["type"], live["event"]["seq"], live["event"]["kind"]) == ("event", 4, "status")
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_an_event_recorded_by_a_worker_thread_reaches_the_viewer(investigation, analyst):
    """As a Celery worker records it: from a plain thread, outside any asgiref context."""
    communicator = await socket(f"/ws/investigations/{investigation.pk}/?after=3", analyst)
    assert (await communicator.connect())[0]

    def worker_step():
        try:
            record_event(investigation.pk, "text", {"text": "from the worker", "block": "2.0"})
        finally:
            connection.close()

    thread = threading.Thread(target=worker_step)
    thread.start()
    live = await communicator.receive_json_from(timeout=5)
    thread.join()
    assert (live["event"]["seq"], live["event"]["data"]["text"]) == (4, "from the worker")
    await communicator.disconnect()


async def test_a_team_member_with_the_object_permission_may_listen(investigation, make_user):
    member = await database_sync_to_async(make_user)("team-member")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", member, investigation)
    communicator = await socket(f"/ws/investigations/{investigation.pk}/", member)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["event"]["seq"] == 1
    await communicator.disconnect()


async def test_the_list_socket_sends_status_changes_only_of_visible_investigations(make_investigation, make_user, manager):
    mine, other = await database_sync_to_async(make_investigation)("A"), await database_sync_to_async(make_investigation)("B")
    member = await database_sync_to_async(make_user)("team-member")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", member, mine)
    as_member, as_manager = await socket("/ws/investigations/", member), await socket("/ws/investigations/", manager)
    assert (await as_member.connect())[0] and (await as_manager.connect())[0]
    for investigation in (other, mine):
        await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
    assert [(await as_manager.receive_json_from(timeout=5))["investigation"]["id"] for _ in range(2)] == [other.pk, mine.pk]
    assert (await as_member.receive_json_from(timeout=5))["investigation"]["id"] == mine.pk
    assert await as_member.receive_nothing(timeout=0.2)
    await as_member.disconnect()
    await as_manager.disconnect()
