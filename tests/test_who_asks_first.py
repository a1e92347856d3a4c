"""Who is asking comes first (issue 14 item 3): on every API endpoint a person without the right gets
403 (or 404 for an object they may not see) before anything they sent is parsed, so a malformed body or
query tells them nothing about the endpoint. With the right, the same request is judged: 400."""

import json

import pytest
from django.test import Client

from console.api import api
from console.manage import administration
from core.roles import ANALYST, MANAGER
from investigations.intake.api import IntegrationToken, PathToken
from investigations.tokens import create_api_token
from toolserver.models import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "hunter2-canary-7d1e"  # sent inside a malformed value: no answer may repeat it

# (method, path, malformed body or query, what someone with the right gets): mostly a 400. An endpoint that
# reads only its path is sent a malformed one; one that reads nothing, something it never reads.
MALFORMED = [
    ("GET", "/api/audit?until=not-a-date", None, 400),
    ("GET", "/api/audit/export?format=xml", None, 400),
    ("GET", "/api/audit/digest?seq=not-a-number", None, 200),  # the head's digest: it takes no input
    # A URL whose host cannot be read (an unclosed IPv6 bracket), with a password in it.
    ("POST", "/api/manage/servers", {"name": "feed-2", "transport": "http", "url": f"https://ops:{SECRET}@[::1"}, 400),
    ("POST", "/api/manage/servers/edr%00response/discover", None, 400),  # a NUL in the name
    ("PUT", "/api/manage/servers/edr-response/credential", {"secret": 5, "smuggled": True}, 400),
    ("GET", "/api/manage/tools/isolate%00host", None, 400),
    ("PATCH", "/api/manage/tools/isolate_host", {"enabled": "maybe"}, 400),
    ("POST", "/api/actions/{id}/approve", {"reason": 5}, 400),
    ("POST", "/api/actions/{id}/reject", {}, 400),
    ("POST", "/api/actions/{id}/confirm", {"happened": "maybe", "reason": ""}, 400),
    # The rule reads the id to judge who may see it: one that is no number names nothing, as an unknown one.
    ("POST", "/api/investigations/{investigation}x/again", None, 404),
]


def call(user, method: str, path: str, body):
    token = create_api_token(user, "tests", decide=True)[1]  # may decide: only the rule refuses
    data = "" if body is None else json.dumps(body)
    return Client().generic(
        method, path, data, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def people(make_user, admin_user, waiting):
    ops = make_user("edr-ops")  # manages one server, nothing else
    administration.grant(admin_user, "manage_toolserver", ToolServer.objects.get(name="edr-response"), ops)
    return {
        "analyst": make_user("ana", ANALYST),
        "manager": make_user("max", MANAGER),
        "ops": ops,
        "nobody": make_user("nemo"),
        "admin": admin_user,
    }


def expected_refusal(who: str, path: str) -> int | None:
    """The status each person gets on each endpoint, before their input is read: None when they have the right."""
    if path.startswith("/api/manage/"):
        return None if who == "admin" else 403
    if path.startswith("/api/audit/digest"):  # the whole chain's head
        return None if who in ("manager", "admin") else 403
    if path.startswith("/api/audit"):  # analysts read their own investigations' trails
        return None if who in ("analyst", "manager", "admin") else 403
    if path.startswith("/api/investigations/"):  # starting one is an analyst's
        return None if who == "analyst" else 403
    # Deciding: analysts approve write tools; a manager sees the request but may not decide; nobody sees nothing.
    return {"analyst": None, "manager": 403, "admin": 404, "ops": 404, "nobody": 404}[who]


@pytest.mark.parametrize("method, path, body, judged", MALFORMED)
def test_without_the_right_a_malformed_request_is_refused_before_it_is_read(
    people, waiting, method, path, body, judged
):
    _, request = waiting
    path = path.format(id=request.pk, investigation=request.investigation_id)
    for who, user in people.items():
        response = call(user, method, path, body)
        refusal = expected_refusal(who, path)
        assert response.status_code == (refusal or judged), (who, response.status_code, response.content)
        assert SECRET not in response.content.decode()
        if refusal:
            assert set(response.json()) == {"detail"}  # nothing about the fields they sent
        elif judged >= 400:
            assert response.json()["detail"], who  # a JSON error that says what is wrong
    request.refresh_from_db()
    assert request.state == "pending"


def test_every_endpoint_that_needs_a_right_judges_the_person_before_the_input():
    """An endpoint added later is checked here too: each operation names its rule, or says why it needs none."""
    open_to_every_person = {
        "list_actions",
        "action_detail",
        "investigation_detail",
        "list_investigations",
    }  # filtered to what each person may see (404 otherwise)
    for _, router in api._routers:
        for path, view in router.path_operations.items():
            for operation in view.operations:
                name = operation.operation_id
                if name in ("receive_alert", "receive_formatted_alert", "receive_splunk_alert"):
                    # An integration's token (a header, or Splunk's in the path), judged before the body; its sources are its own.
                    assert all(
                        isinstance(scheme, (IntegrationToken, PathToken)) for scheme in operation.auth_callbacks
                    ), name
                    continue
                rules = {getattr(scheme, "rule", "missing") for scheme in operation.auth_callbacks}
                if name in open_to_every_person:
                    assert rules == {None}, name
                else:
                    assert None not in rules and "missing" not in rules, (
                        f"{name} ({path}) reads input before judging who asks"
                    )
