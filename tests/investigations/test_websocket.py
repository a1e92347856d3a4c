"""The investigation websockets through the real ASGI application: who may listen, backlog then live,
and that a socket ends with its user's access (sign-out, deactivation, role or grant removed)."""

import json
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from core.roles import ANALYST
from investigations.approvals.services import summary
from investigations.live_messages import EVENT_SCHEMAS, EventMessage, StatusMessage
from investigations.models import ActionRequest, Event
from investigations.runs.events import record_event
from tests.support import WAIT_S
from tests.websockets import HOST, next_output, queries_made, received, refused, signed_in, socket

pytestmark = pytest.mark.django_db(transaction=True)
ACCESS_ENDED = {"type": "websocket.close", "code": 4403}


@pytest.fixture
def investigation(make_investigation):
    investigation = make_investigation()
    for n in range(3):
        record_event(investigation.pk, "text", {"text": f"chunk {n + 1}", "block": "1.0"})
    return investigation


def test_every_kind_of_event_has_its_schema():
    assert sorted(schema.model_fields["kind"].annotation.__args__[0] for schema in EVENT_SCHEMAS) == sorted(
        Event.Kind.values
    )


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
    backlog = [await received(communicator, EventMessage) for _ in range(2)]
    assert [(m["event"]["seq"], m["event"]["data"]["text"]) for m in backlog] == [(2, "chunk 2"), (3, "chunk 3")]
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": "Live."})
    live = await received(communicator, EventMessage)
    assert (live["type"], live["event"]["seq"], live["event"]["kind"]) == ("event", 4, "status")
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@pytest.mark.parametrize("after", ["not-a-seq", str(2**63), "9" * 5000])  # past what a database holds, past int()
async def test_an_after_that_is_no_seq_sends_the_whole_backlog(investigation, analyst, after):
    communicator = await socket(f"/ws/investigations/{investigation.pk}/?after={after}", analyst)
    assert (await communicator.connect())[0]
    backlog = [await received(communicator, EventMessage) for _ in range(3)]
    assert [m["event"]["seq"] for m in backlog] == [1, 2, 3]
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
    live = await received(communicator, EventMessage)
    thread.join(timeout=WAIT_S)
    assert not thread.is_alive()
    assert (live["event"]["seq"], live["event"]["data"]["text"]) == (4, "from the worker")
    await communicator.disconnect()


# What reorders a host name (a right-to-left override), hides in it (a zero-width space) or ends a line.
HIDING_TARGET = "host=WS-FIN-07\u202e\u200bexe.gpj"
HIDING_OUTCOME = "WS-FIN-07\u202e isolated\u2028forged line"


def hiding_request(investigation) -> ActionRequest:
    return ActionRequest.objects.create(
        investigation=investigation,
        tool_use_id="toolu_hiding0001",
        idempotency_key="key-hiding",
        tool="isolate_host",
        server="edr-response",
        arguments={"host": "WS-FIN-07", "reason": "test"},
        target=HIDING_TARGET,
        outcome=HIDING_OUTCOME,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def record_action(request: ActionRequest) -> None:
    record_event(request.investigation_id, Event.Kind.ACTION, summary(request))


async def test_an_actions_target_and_outcome_are_sent_as_its_card_shows_them(make_investigation, analyst):
    """The page's script draws the transcript's action line as sent: the socket sends the text as the
    decision card beside it shows it (core.text), backlog and live."""
    investigation = await database_sync_to_async(make_investigation)()
    request = await database_sync_to_async(hiding_request)(investigation)
    await database_sync_to_async(record_action)(request)
    communicator = await socket(f"/ws/investigations/{investigation.pk}/", analyst)
    assert (await communicator.connect())[0]
    backlog = (await received(communicator, EventMessage))["event"]["data"]
    await database_sync_to_async(record_action)(request)
    live = (await received(communicator, EventMessage))["event"]["data"]
    await communicator.disconnect()

    for data in (backlog, live):
        assert data["target"] == "host=WS-FIN-07\\u202e\\u200bexe.gpj" == request.target_text  # the card's head
        assert data["outcome"] == "WS-FIN-07\\u202e isolated\\u2028forged line"
    assert await database_sync_to_async(Event.objects.filter(data__target=HIDING_TARGET).count)() == 2  # saved as sent


# A backend's data as an attacker may write it: a file name whose right-to-left override reads ".exe" as
# ".gpj" and whose zero-width space hides in it, in a log line's field and in its key.
SPOOFED = "ws-fin-07\u202e\u200bexe.gpj"
SPOOFED_SHOWN = "ws-fin-07\\u202e\\u200bexe.gpj"  # as core.text shows it: each escape once


def spoofed_events() -> list[tuple[str, dict]]:
    """One event of each kind the model's run records, each carrying the spoofed name."""
    result = {"status": "ok", "source": "siem", "results": [{"user": "ana", "file\u200b": SPOOFED}]}
    return [
        ("text", {"text": f"The download was {SPOOFED}.\n", "block": "1.0"}),
        (
            "tool_call",
            {"tool_use_id": "toolu_s1", "call": "1.0", "name": "search_logs", "server": "siem", "write": False}
            | {"input": {"query": f"file={SPOOFED}"}},
        ),
        ("tool_result", {"tool_use_id": "toolu_s1", "call": "1.0", "name": "search_logs", "result": result}),
        ("status", {"status": "running", "message": f"Looking at {SPOOFED}"}),
        ("verdict", {"verdict": "malicious", "summary": f"Ran {SPOOFED}", "evidence": [SPOOFED], "end_reason": ""}),
    ]


async def test_the_transcripts_text_and_tool_data_are_sent_as_read(make_investigation, analyst):
    """The page's script draws every event as sent: the model's text, a tool's arguments and result (a
    backend's data), a status and a verdict come with what reorders or hides text as its escapes (core.text),
    backlog and live; a tool's pretty JSON with each escape once. The saved events are as recorded."""
    investigation = await database_sync_to_async(make_investigation)()
    for kind, data in spoofed_events():
        await database_sync_to_async(record_event)(investigation.pk, kind, data)
    communicator = await socket(f"/ws/investigations/{investigation.pk}/", analyst)
    assert (await communicator.connect())[0]
    backlog = [(await received(communicator, EventMessage))["event"] for _ in spoofed_events()]
    for kind, data in spoofed_events():
        await database_sync_to_async(record_event)(investigation.pk, kind, data)
    live = [(await received(communicator, EventMessage))["event"] for _ in spoofed_events()]
    await communicator.disconnect()

    for sent in (backlog, live):
        text, call, result, status, verdict = (event["data"] for event in sent)
        assert text["text"] == f"The download was {SPOOFED_SHOWN}.\n"  # the line break kept, as on a page
        assert f'"query": "file={SPOOFED_SHOWN}"' in call["input_json"]
        assert f'"file\\u200b": "{SPOOFED_SHOWN}"' in result["result_json"]  # keys too
        assert "\\\\" not in call["input_json"] + result["result_json"]  # no escape's backslash doubled
        assert json.loads(result["result_json"]) == spoofed_events()[2][1]["result"]  # the result, whole
        # The data once, as that text: beside it only the head of its envelope the page reads.
        assert "input" not in call and result["result"] == {"status": "ok", "source": "siem"}
        assert status["message"] == f"Looking at {SPOOFED_SHOWN}"
        assert (verdict["summary"], verdict["evidence"]) == (f"Ran {SPOOFED_SHOWN}", [SPOOFED_SHOWN])
        assert not {"\u202e", "\u200b"} & set(json.dumps(sent, ensure_ascii=False))

    saved = await database_sync_to_async(list)(Event.objects.filter(investigation=investigation).order_by("seq"))
    assert [(event.kind, event.data) for event in saved] == spoofed_events() * 2  # as recorded


async def test_a_team_member_with_the_object_permission_may_listen(investigation, make_user):
    member = await database_sync_to_async(make_user)("team-member")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", member, investigation)
    communicator = await socket(f"/ws/investigations/{investigation.pk}/", member)
    connected, _ = await communicator.connect()
    assert connected
    assert (await received(communicator, EventMessage))["event"]["seq"] == 1
    await communicator.disconnect()


async def test_the_list_socket_sends_status_changes_only_of_visible_investigations(
    make_investigation, make_user, manager
):
    mine, other = (
        await database_sync_to_async(make_investigation)("A"),
        await database_sync_to_async(make_investigation)("B"),
    )
    member = await database_sync_to_async(make_user)("team-member")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", member, mine)
    as_member, as_manager = await socket("/ws/investigations/", member), await socket("/ws/investigations/", manager)
    assert (await as_member.connect())[0] and (await as_manager.connect())[0]
    for investigation in (other, mine):
        await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
    assert [(await received(as_manager, StatusMessage))["investigation"]["id"] for _ in range(2)] == [other.pk, mine.pk]
    assert (await received(as_member, StatusMessage))["investigation"]["id"] == mine.pk
    assert await as_member.receive_nothing(timeout=0.2)
    await as_member.disconnect()
    await as_manager.disconnect()


async def test_the_list_sockets_are_sent_what_the_publisher_chose_without_a_query_per_socket(
    make_investigation, make_user, manager, analyst, settings, monkeypatch
):
    """Who hears of a status change is chosen when it is published (those who see all, and each user
    granted the investigation); the open sockets only pass it on, once each, even to a user who both
    sees all and holds a grant."""
    settings.SOCKET_RECHECK_SECONDS = 3600  # no access re-check falls due during the test: only per-change work counts
    investigation = await database_sync_to_async(make_investigation)("A")
    members = [await database_sync_to_async(make_user)(f"team-member-{n}") for n in range(3)]
    for user in (*members, analyst):
        await database_sync_to_async(assign_perm)("investigations.view_investigation", user, investigation)
    sockets = [await socket("/ws/investigations/", user) for user in (*members, manager, analyst)]
    for communicator in sockets:
        assert (await communicator.connect())[0]
    queries = queries_made(monkeypatch)
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
    queries.clear()  # the publisher's
    heard = [await received(communicator, StatusMessage) for communicator in sockets]
    assert [m["investigation"]["id"] for m in heard] == [investigation.pk] * 5
    assert queries == []
    for communicator in sockets:
        assert await communicator.receive_nothing(timeout=0.1)
        await communicator.disconnect()


async def test_after_the_role_is_removed_a_granted_user_still_hears_of_their_investigation(investigation, analyst):
    await database_sync_to_async(assign_perm)("investigations.view_investigation", analyst, investigation)
    listening = await opened(await socket("/ws/investigations/", analyst))
    group = await database_sync_to_async(Group.objects.get)(name=ANALYST)
    await database_sync_to_async(analyst.groups.remove)(group)
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
    assert (await received(listening, StatusMessage))["investigation"]["id"] == investigation.pk
    assert await listening.receive_nothing(timeout=0.3)
    await listening.disconnect()


# Access ends: the user's sockets are told at once, and close with 4403 before anything else is sent.


async def opened(communicator: WebsocketCommunicator, messages: int = 0) -> WebsocketCommunicator:
    """Connected, with the first `messages` (backlog or snapshot) read."""
    assert (await communicator.connect())[0]
    for _ in range(messages):
        await communicator.receive_json_from(timeout=5)
    return communicator


async def ends_with_access(communicator: WebsocketCommunicator, investigation) -> None:
    """Closed with 4403 at once (no event needed to notice), and nothing sent after it."""
    assert await next_output(communicator) == ACCESS_ENDED
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": "After."})
    assert await communicator.receive_nothing(timeout=0.3)


async def test_signing_out_ends_that_sessions_sockets_only(investigation, analyst):
    browser, other_browser = (
        await database_sync_to_async(signed_in)(analyst),
        await database_sync_to_async(signed_in)(analyst),
    )
    path = f"/ws/investigations/{investigation.pk}/"
    signing_out = await opened(await socket(path, client=browser), messages=3)
    staying = await opened(await socket(path, client=other_browser), messages=3)
    response = await database_sync_to_async(browser.post)("/logout/")
    assert response.status_code == 302
    await ends_with_access(signing_out, investigation)
    assert (await received(staying, EventMessage))["event"]["seq"] == 4  # their other sign-in still listens
    await staying.disconnect()


async def test_deactivating_a_user_ends_their_sockets(investigation, analyst):
    communicator = await opened(await socket(f"/ws/investigations/{investigation.pk}/", analyst), messages=3)
    analyst.is_active = False
    await database_sync_to_async(analyst.save)()
    await ends_with_access(communicator, investigation)


async def test_removing_the_role_ends_the_investigation_and_approval_sockets(investigation, analyst):
    viewing = await opened(await socket(f"/ws/investigations/{investigation.pk}/", analyst), messages=3)
    queue = await opened(await socket("/ws/approvals/?queue=1", analyst), messages=1)
    group = await database_sync_to_async(Group.objects.get)(name=ANALYST)
    await database_sync_to_async(analyst.groups.remove)(group)
    assert await next_output(viewing) == ACCESS_ENDED
    await ends_with_access(queue, investigation)
    assert await viewing.receive_nothing(timeout=0.1)


async def test_after_the_role_is_removed_the_list_sends_only_what_is_still_visible(investigation, analyst):
    listening = await opened(await socket("/ws/investigations/", analyst))
    group = await database_sync_to_async(Group.objects.get)(name=ANALYST)
    await database_sync_to_async(analyst.groups.remove)(group)
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
    assert await listening.receive_nothing(timeout=0.3)
    await listening.disconnect()


async def test_revoking_a_users_grant_ends_their_socket(investigation, make_user):
    member = await database_sync_to_async(make_user)("team-member")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", member, investigation)
    communicator = await opened(await socket(f"/ws/investigations/{investigation.pk}/", member), messages=3)
    await database_sync_to_async(remove_perm)("investigations.view_investigation", member, investigation)
    await ends_with_access(communicator, investigation)


async def test_revoking_a_teams_grant_ends_every_members_socket(investigation, make_user):
    def team_of_two():
        team = Group.objects.create(name="team-blue")
        members = [make_user("blue-1"), make_user("blue-2")]
        team.user_set.add(*members)
        assign_perm("investigations.view_investigation", team, investigation)
        return team, members

    team, members = await database_sync_to_async(team_of_two)()
    sockets = [
        await opened(await socket(f"/ws/investigations/{investigation.pk}/", member), messages=3) for member in members
    ]
    await database_sync_to_async(remove_perm)("investigations.view_investigation", team, investigation)
    assert await next_output(sockets[0]) == ACCESS_ENDED
    await ends_with_access(sockets[1], investigation)
    assert await sockets[0].receive_nothing(timeout=0.1)


async def test_leaving_the_team_ends_the_socket(investigation, make_user):
    def member_of_team():
        team = Group.objects.create(name="team-blue")
        member = make_user("blue-1")
        team.user_set.add(member)
        assign_perm("investigations.view_investigation", team, investigation)
        return team, member

    team, member = await database_sync_to_async(member_of_team)()
    communicator = await opened(await socket(f"/ws/investigations/{investigation.pk}/", member), messages=3)
    await database_sync_to_async(team.user_set.remove)(member)  # from the group's side, as a team page would
    await ends_with_access(communicator, investigation)


async def test_a_session_ended_without_a_signal_is_noticed_before_the_next_message(investigation, analyst, settings):
    """Sessions also end by expiry or clearsessions, which nobody announces: each send re-checks (no cache here)."""
    settings.SOCKET_RECHECK_SECONDS = 0
    browser = await database_sync_to_async(signed_in)(analyst)
    communicator = await opened(await socket(f"/ws/investigations/{investigation.pk}/", client=browser), messages=3)
    key = browser.cookies[settings.SESSION_COOKIE_NAME].value
    await database_sync_to_async(Session.objects.filter(session_key=key).delete)()
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": "Unseen."})
    assert await next_output(communicator) == ACCESS_ENDED
    assert await communicator.receive_nothing(timeout=0.3)


# The origin: scheme, host and port exactly the console's own (as the browser reached it), or a configured one.


@pytest.mark.parametrize(
    "origin, host",
    [
        (b"http://127.0.0.1:8831.evil.example", HOST),  # malformed: the "port" is a foreign host name
        (b"http://127.0.0.1:8831", HOST),  # another port of the same host: another origin
        (b"http://127.0.0.1", b"127.0.0.1:8831"),
        (b"https://127.0.0.1", HOST),  # another scheme
        (b"http://127.0.0.1/some/path", HOST),  # an origin has no path
        (b"http://someone@127.0.0.1", HOST),
        (b"http://127.0.0.1.evil.example", HOST),
        (b"null", HOST),
        (b"http://evil.example", b"evil.example"),  # matching a Host that is not the console's
    ],
)
async def test_only_the_consoles_own_origin_may_open_a_socket(investigation, analyst, origin, host):
    assert await refused(
        await socket(f"/ws/investigations/{investigation.pk}/", analyst, origin=(b"origin", origin), host=host)
    )


@pytest.mark.parametrize(
    "origin, host",
    [
        (b"http://127.0.0.1", HOST),
        (b"http://127.0.0.1:8831", b"127.0.0.1:8831"),
        (b"http://LOCALHOST:8831", b"localhost:8831"),
    ],
)
async def test_the_same_origin_is_accepted(investigation, analyst, origin, host):
    communicator = await socket(
        f"/ws/investigations/{investigation.pk}/", analyst, origin=(b"origin", origin), host=host
    )
    assert (await communicator.connect())[0]
    await communicator.disconnect()


async def test_a_configured_origin_is_accepted_behind_a_proxy_that_changes_the_host(investigation, analyst, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://soc.example.org"]
    trusted = await socket(
        f"/ws/investigations/{investigation.pk}/", analyst, origin=(b"origin", b"https://soc.example.org")
    )
    assert (await trusted.connect())[0]
    await trusted.disconnect()
    assert await refused(
        await socket(
            f"/ws/investigations/{investigation.pk}/", analyst, origin=(b"origin", b"https://soc.example.org:8443")
        )
    )
