"""Who sees what, walked through every place that shows it (architecture rule 12).

One table: for each kind of user, the investigations they see (and so the action requests) and
the investigations whose audit trails they read. For each row, the models' rule
(`Investigation.objects.visible_to`, `ActionRequest.objects.visible_to`,
`AuditRecord.objects.visible_to`) gives what the table says, and every page, API call, export and
socket that shows investigations, requests or records shows exactly what that rule gives: no more,
no less. Everything is real: the ASGI application, the channel layer, the database.

The investigations:
    A  granted to the team "blue" (a django-guardian group permission); ana is in the team
    B  granted to solo (a user permission)
    C  ana submitted its alert
    D  ana asked for it
    E  ana decided an action of it
    F  nobody's in particular
"""

import json
import re
from dataclasses import dataclass, field

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from django.test import Client
from guardian.shortcuts import assign_perm

from core.roles import ADMIN, ANALYST, MANAGER
from investigations.approvals import services as approvals
from investigations.audit import chain
from investigations.models import ActionRequest, Alert, AuditRecord, Investigation
from investigations.runs.events import record_event
from tests.investigations.test_approval_pages import make_request
from tests.support import WAIT_S
from tests.websockets import socket
from toolserver.audit import Outcome, ToolCallAudit

pytestmark = pytest.mark.django_db(transaction=True)

LETTERS = "ABCDEF"
EVERY_RECORD = "*"


@dataclass(frozen=True)
class Row:
    username: str | None  # None: nobody is signed in
    sees: str  # the investigations seen, and so their action requests
    trails: str  # the investigations whose records are read; EVERY_RECORD: the whole trail
    roles: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)


TABLE = [
    Row(None, sees="", trails=""),
    Row("nobody", sees="", trails=""),
    Row("blue-member", sees="A", trails=""),
    Row("solo", sees="B", trails=""),
    Row("ana", roles=(ANALYST,), sees="ABCDEF", trails="ACDE"),
    Row("bea", roles=(ANALYST,), sees="ABCDEF", trails=""),
    Row("max", roles=(MANAGER,), sees="ABCDEF", trails=EVERY_RECORD),
    Row("ada", roles=(ADMIN,), sees="", trails=EVERY_RECORD),
    Row("root", sees="ABCDEF", trails=EVERY_RECORD, fields={"is_superuser": True}),
    Row("gone", roles=(ANALYST,), sees="", trails="", fields={"is_active": False}),
]


def build(make_user, make_investigation) -> dict:
    """The investigations A-F, one pending request and one tool-call record each; E's request
    rejected by ana; the users of the table (and blue's team grant)."""
    approvals.ensure_policies()  # analysts may approve the write tools
    users = {row.username: make_user(row.username, *row.roles, **row.fields) for row in TABLE if row.username}
    blue = Group.objects.create(name="blue")
    users["blue-member"].groups.add(blue)
    users["ana"].groups.add(blue)
    investigations = {letter: make_investigation(f"VIS-{letter}") for letter in LETTERS}
    assign_perm("investigations.view_investigation", blue, investigations["A"])
    assign_perm("investigations.view_investigation", users["solo"], investigations["B"])
    Alert.objects.filter(pk=investigations["C"].alert_id).update(submitted_by=users["ana"])
    Investigation.objects.filter(pk=investigations["D"].pk).update(requested_by=users["ana"])
    requests = {letter: make_request(investigation) for letter, investigation in investigations.items()}
    for investigation in investigations.values():
        chain.record_tool_call(
            ToolCallAudit(
                server="edr",
                tool="get_host",
                arguments={"host": "WS-1"},
                outcome=Outcome.OK,
                correlation_id=investigation.correlation_id,
            )
        )
    approvals.reject(requests["E"].pk, users["ana"], "not this one")
    return {
        "users": users,
        "investigations": investigations,
        "requests": requests,
        "letter": {investigation.pk: letter for letter, investigation in investigations.items()},
    }


def client_of(user) -> Client:
    client = Client()
    if user is not None and not user.is_anonymous:
        client.force_login(user)
    return client


def ids(pattern: str, response) -> set[int]:
    return (
        {int(found) for found in re.findall(pattern, response.content.decode())}
        if response.status_code == 200
        else set()
    )


def shown(client, urls: dict[int, str]) -> set[int]:
    """The keys of the URLs answered 200."""
    return {key for key, url in urls.items() if client.get(url).status_code == 200}


def exported(response) -> set[int]:
    if response.status_code != 200:
        return set()
    lines = b"".join(response.streaming_content).decode().splitlines()
    return {json.loads(line)["seq"] for line in lines if "signed_head" not in line}


def readable(user) -> set[int]:
    return set(AuditRecord.objects.visible_to(user).values_list("seq", flat=True))


def through_pages_and_api(world: dict, user) -> None:
    """Every page, API call and export that shows investigations, requests or records, against the rule."""
    client = client_of(user)
    investigations = set(Investigation.objects.visible_to(user).values_list("pk", flat=True))
    requests = set(ActionRequest.objects.visible_to(user).values_list("pk", flat=True))
    every_investigation = [investigation.pk for investigation in world["investigations"].values()]
    every_request = [request.pk for request in world["requests"].values()]

    assert ids(r'href="/investigations/(\d+)/"', client.get("/investigations/")) == investigations
    assert shown(client, {pk: f"/investigations/{pk}/" for pk in every_investigation}) == investigations
    assert shown(client, {pk: f"/api/investigations/{pk}" for pk in every_investigation}) == investigations

    assert ids(r'data-action-id="(\d+)"', client.get("/approvals/")) == requests
    assert shown(client, {pk: f"/approvals/{pk}/" for pk in every_request}) == requests
    listed = client.get("/api/actions", {"limit": 200})
    assert ({item["id"] for item in listed.json()["items"]} if listed.status_code == 200 else set()) == requests
    assert shown(client, {pk: f"/api/actions/{pk}" for pk in every_request}) == requests

    # Each read of the trail is recorded first and shows the records before its own: the rule's
    # answer just before the read. The list page shows the newest page of it.
    before = sorted(readable(user), reverse=True)
    assert ids(r'<tr data-seq="(\d+)"', client.get("/audit/")) == set(before[:50])
    before = readable(user)
    listed = client.get("/api/audit", {"limit": 500})
    assert ({item["seq"] for item in listed.json()["items"]} if listed.status_code == 200 else set()) == before
    before = readable(user)
    assert exported(client.get("/audit/export", {"format": "jsonl"})) == before
    before = readable(user)
    assert exported(client.get("/api/audit/export", {"format": "jsonl"})) == before
    data_records = set(AuditRecord.objects.exclude(correlation_id="").values_list("seq", flat=True))
    assert shown(client, {seq: f"/audit/records/{seq}/" for seq in data_records}) == data_records & before
    trails = {
        pk
        for pk in every_investigation
        if readable(user)
        & set(
            AuditRecord.objects.filter(correlation_id=Investigation.correlation_id_of(pk)).values_list("seq", flat=True)
        )
    }
    assert shown(client, {pk: f"/audit/investigations/{pk}/" for pk in every_investigation}) == trails


def the_rule_is_the_table(world: dict, row: Row, user) -> None:
    letter = world["letter"]
    assert {letter[pk] for pk in Investigation.objects.visible_to(user).values_list("pk", flat=True)} == set(row.sees)
    assert {letter[r.investigation_id] for r in ActionRequest.objects.visible_to(user)} == set(row.sees)
    records = AuditRecord.objects.visible_to(user)
    if row.trails == EVERY_RECORD:
        assert records.count() == AuditRecord.objects.count()
    else:
        assert {letter[record.investigation_id] for record in records} == set(row.trails)


async def heard_until_closed(communicator) -> list[dict]:
    """What a socket sends until it closes: its user signing out closes it (4403) after every
    message published before, so nothing is waited for but the close itself."""
    heard = []
    while (output := await communicator.receive_output(WAIT_S))["type"] != "websocket.close":
        heard.append(json.loads(output["text"]))
    assert output["code"] == 4403
    return heard


@pytest.mark.parametrize("row", TABLE, ids=[row.username or "signed-out" for row in TABLE])
async def test_each_user_sees_exactly_the_rule_through_every_page_api_export_and_socket(
    make_user, make_investigation, row
):
    world = await database_sync_to_async(build)(make_user, make_investigation)
    user = world["users"][row.username] if row.username else AnonymousUser()
    if row.username:
        user = await database_sync_to_async(get_user_model().objects.get)(pk=user.pk)  # no cached permissions
    await database_sync_to_async(the_rule_is_the_table)(world, row, user)
    await database_sync_to_async(through_pages_and_api)(world, user)

    visible = await database_sync_to_async(
        lambda: set(Investigation.objects.visible_to(user).values_list("pk", flat=True))
    )()
    requests = await database_sync_to_async(
        lambda: set(ActionRequest.objects.visible_to(user).values_list("pk", flat=True))
    )()
    client = await database_sync_to_async(client_of)(row.username and user)

    # One investigation's socket: opened exactly for the visible ones.
    opened = set()
    for investigation in world["investigations"].values():
        communicator = await socket(f"/ws/investigations/{investigation.pk}/", client=client if row.username else None)
        if (await communicator.connect())[0]:
            opened.add(investigation.pk)
        await communicator.disconnect()
    assert opened == visible

    # The list's socket and the approvals socket: what they send of every change.
    as_list = await socket("/ws/investigations/", client=client if row.username else None)
    as_queue = await socket("/ws/approvals/?queue=1", client=client if row.username else None)
    list_open, queue_open = (await as_list.connect())[0], (await as_queue.connect())[0]
    assert queue_open == bool(requests)  # who sees no investigation has no queue
    if queue_open:
        snapshot = await as_queue.receive_json_from(WAIT_S)
        assert {entry["request"]["id"] for entry in snapshot["requests"]} == requests
    decider = await database_sync_to_async(make_user)("dee", ANALYST)
    for letter, investigation in world["investigations"].items():
        await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": ""})
        if letter != "E":  # E's was decided already
            await database_sync_to_async(approvals.reject)(world["requests"][letter].pk, decider, "no")
    if list_open or queue_open:
        await database_sync_to_async(client.logout)()
    if list_open:
        assert {m["investigation"]["id"] for m in await heard_until_closed(as_list) if m["type"] == "status"} == visible
    if queue_open:
        changed = {world["requests"][letter].pk for letter in LETTERS if letter != "E"}
        assert {
            m["request"]["id"] for m in await heard_until_closed(as_queue) if m["type"] == "request"
        } == requests & changed
    await as_list.disconnect()
    await as_queue.disconnect()


def test_a_status_change_is_sent_to_the_users_granted_the_investigation_found_in_one_query(
    make_user, make_investigation, django_assert_num_queries
):
    """Every status change an investigation makes asks who holds a grant on it (its list-page update),
    hundreds a minute at volume: one query, where the row was read first for guardian's own (two)."""
    from investigations.runs.selectors import granted_viewer_ids

    ours, other = make_investigation("GRANT-1"), make_investigation("GRANT-2")
    solo, member, idle, gone, elsewhere, changer = (
        make_user(name) for name in ("solo", "member", "idle", "gone", "elsewhere", "changer")
    )
    team, idle_team = Group.objects.create(name="team"), Group.objects.create(name="idle-team")
    member.groups.add(team)
    gone.groups.add(team)
    idle.groups.add(idle_team)
    get_user_model().objects.filter(pk=gone.pk).update(is_active=False)
    assign_perm("investigations.view_investigation", solo, ours)
    assign_perm("investigations.view_investigation", team, ours)
    assign_perm("investigations.view_investigation", elsewhere, other)
    assign_perm("investigations.view_investigation", idle_team, other)
    assign_perm("investigations.change_investigation", changer, ours)  # not a grant to view

    with django_assert_num_queries(1):
        granted = granted_viewer_ids(ours.pk)
    assert granted == sorted([solo.pk, member.pk])
    assert granted_viewer_ids(other.pk) == sorted([elsewhere.pk, idle.pk])


@pytest.mark.django_db
def test_a_dispatched_writes_outcome_is_found_only_in_the_trails_its_reader_may_read(make_user, make_investigation):
    """Investigating an alert again shares its writes' keys: the next record of the key may be in a trail
    the reader may not read, and a record's page names only what they may."""
    reader = make_user("ana", ANALYST)  # reads the trails of the investigations she asked for
    ours, theirs = make_investigation("OUTCOME-1"), make_investigation("OUTCOME-2")
    Investigation.objects.filter(pk=ours.pk).update(requested_by=reader)

    def write(investigation, outcome):
        return chain.record_tool_call(
            ToolCallAudit(
                server="edr-response",
                tool="isolate_host",
                arguments={"host": "ws-fin-07"},
                outcome=outcome,
                idempotency_key="isolate-ws-fin-07-alert-1",
                correlation_id=investigation.correlation_id,
            )
        )

    ours_sent = write(ours, Outcome.DISPATCHED)  # its process stopped: nothing more in our trail
    theirs_done = write(theirs, Outcome.OK)
    page = client_of(reader).get(f"/audit/records/{ours_sent.seq}/").content.decode()
    assert "Outcome unknown" in page and f"#{theirs_done.seq}" not in page
    manager = make_user("boss", MANAGER)  # reads the whole trail: the next record of the key is its outcome
    assert f"#{theirs_done.seq}</a> (ok)" in client_of(manager).get(f"/audit/records/{ours_sent.seq}/").content.decode()
