"""The approval pages (the queue, a request's history, the decision card) and the approvals socket.

The requests are real: the offline model investigates the lab's phishing story (LAB-SIEM-1001)
through the real tool servers until it asks to isolate WS-FIN-07 and waits. Decisions go through
the pages' forms; `approvals.execute` then does what a worker does.
"""

import html
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from core.roles import ANALYST, MANAGER
from investigations.approvals import services as approvals
from investigations.live_messages import RequestMessage, SnapshotMessage
from investigations.models import (
    ActionApproval,
    ActionRequest,
    Investigation,
    ToolPolicy,
)
from investigations.runs import agent, services
from tests.websockets import queries_made, received, refused, socket
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<script>alert('owned')</script>"


def page_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def card(page: str, request: ActionRequest) -> str:
    """The decision card of `request` on a page."""
    match = re.search(rf'<article id="action-{request.pk}" .*?</article>', page, re.S)
    assert match, f"no card of request {request.pk}"
    return match.group(0)


def section(page: str, start_id: str, end_marker: str) -> str:
    return page.split(f'id="{start_id}"', 1)[1].split(end_marker, 1)[0]


def queue_section(page: str) -> str:
    return section(page, "approval-queue", 'id="recent-heading"')


def recent_section(page: str) -> str:
    return section(page, "approval-recent", "</section>")


def decide(client, request: ActionRequest, decision: str, reason: str = "", *, json=False, next_url=None):
    data = {"reason": reason}
    if next_url:
        data["next"] = next_url
    headers = {"HTTP_ACCEPT": "application/json"} if json else {}
    return client.post(reverse(f"investigations:{decision}", args=[request.pk]), data, **headers)


def state_of(request: ActionRequest) -> str:
    return ActionRequest.objects.get(pk=request.pk).state


def title_of(page: str) -> str:
    return re.search(r"<title>(.*?)</title>", page, re.S).group(1)


def nav_count(page: str) -> tuple[str, bool]:
    """The navigation badge's number, and whether it is hidden."""
    match = re.search(r'<span id="nav-approvals-count"[^>]*?( hidden)?>(\d+)</span>', page)
    assert match, "the navigation has the approvals count"
    return match.group(2), bool(match.group(1))


# -- the queue ---------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [ANALYST, MANAGER])
def test_the_queue_shows_a_pending_request_with_what_why_evidence_alert_and_risk(client, make_user, waiting, role):
    investigation, request = waiting
    client.force_login(make_user("someone", role))
    shown = card(queue_section(page_of(client, reverse("investigations:approvals"))), request)

    assert '<span class="tool-name">isolate_host</span>' in shown
    assert '<code class="decision-target">host=ws-fin-07</code>' in shown
    assert html.escape(request.reason, quote=False) in shown
    assert len(request.evidence) == 4
    for item in request.evidence:  # each cited result links to its event in the transcript
        assert f'href="/investigations/{investigation.pk}/#event-{item["seq"]}"' in shown
    assert html.escape(investigation.alert.title) in shown
    assert "<code>lab-siem:LAB-SIEM-1001</code>" in shown
    assert "<li>host role: workstation</li>" in shown
    assert re.search(r'<span class="approvals-given">0</span> of <span class="approvals-needed">1</span>', shown)
    assert re.search(r'<time class="time-left" datetime="[^"]+">in 59\xa0minutes</time>', shown)


def test_the_analyst_may_decide_and_the_manager_sees_the_buttons_disabled_with_why(client, analyst, manager, waiting):
    _, request = waiting
    client.force_login(analyst)
    for_analyst = card(page_of(client, reverse("investigations:approvals")), request)
    assert 'data-may-approve="true"' in for_analyst
    assert "disabled" not in for_analyst
    assert re.search(r'<p class="decision-note" hidden>', for_analyst)

    client.force_login(manager)
    for_manager = card(page_of(client, reverse("investigations:approvals")), request)
    assert 'data-may-approve="false"' in for_manager
    assert re.search(r'<button type="submit" class="approve" [^>]*disabled>Approve</button>', for_manager)
    assert re.search(r'<button type="submit" class="reject" [^>]*disabled>Reject</button>', for_manager)
    assert '<p class="decision-note">You are not allowed to approve isolate_host.</p>' in for_manager


def test_the_queue_lists_oldest_first_and_moves_a_decided_request_below_with_its_outcome(client, analyst, waiting):
    first_investigation, first = waiting
    second_investigation = services.start_investigation(first_investigation.alert)  # the same alert, again
    agent.run(second_investigation.pk)
    second = second_investigation.action_requests.get(state="pending")
    client.force_login(analyst)

    queue = queue_section(page_of(client, reverse("investigations:approvals")))
    assert re.findall(r'<article id="action-(\d+)"', queue) == [str(first.pk), str(second.pk)]

    decide(client, first, "reject", "Finance server: isolate after month-end close.")
    page = page_of(client, reverse("investigations:approvals"))
    assert re.findall(r'<article id="action-(\d+)"', queue_section(page)) == [str(second.pk)]
    decided = card(recent_section(page), first)
    assert 'data-state="rejected"' in decided
    assert '<p class="decision-outcome">rejected by ana: Finance server: isolate after month-end close.</p>' in decided
    assert f'<form class="decision-form" method="post" action="/approvals/{first.pk}/approve" hidden>' in decided


# -- deciding ----------------------------------------------------------------------------------
def test_the_manager_is_refused_with_403_and_the_request_stays_pending(client, manager, waiting):
    _, request = waiting
    client.force_login(manager)
    response = decide(client, request, "approve")
    assert response.status_code == 403
    assert "You are not allowed to approve isolate_host." in response.content.decode()
    assert state_of(request) == "pending" and not ActionApproval.objects.exists()

    answer = decide(client, request, "approve", json=True)
    assert answer.status_code == 403
    assert answer.json()["detail"] == "You are not allowed to approve isolate_host."
    assert decide(client, request, "reject", "no", json=True).status_code == 403
    assert state_of(request) == "pending"


def test_approved_it_runs_and_the_history_shows_every_step_and_the_outcome(client, analyst, waiting):
    investigation, request = waiting
    client.force_login(analyst)
    back_to = reverse("investigations:detail", args=[investigation.pk])
    response = decide(client, request, "approve", "Confirmed with the finance team lead.", next_url=back_to)
    assert response.status_code == 302 and response.url == back_to
    assert state_of(request) == "approved"
    assert not LabWrite.objects.exists()  # the worker fires it, not the page

    approvals.execute(request.pk)  # what the worker's execute_action task does
    assert LabWrite.objects.filter(action="isolate_host").count() == 1
    page = page_of(client, reverse("investigations:action", args=[request.pk]))
    steps = re.findall(
        r'<tr data-from="(\w*)" data-to="(\w+)">.*?<td class="actor">(.*?)</td>\s*<td class="why">(.*?)</td>',
        page,
        re.S,
    )
    assert [(f, t, actor) for f, t, actor, _ in steps] == [
        ("", "pending", "agent"),
        ("pending", "approved", "user:ana"),
        ("approved", "executing", "system"),
        ("executing", "succeeded", "system"),
    ]
    assert steps[1][3] == "Confirmed with the finance team lead."
    assert '<p class="outcome-line"><strong>WS-FIN-07 isolated</strong></p>' in page
    assert '<p class="decision-outcome">WS-FIN-07 isolated</p>' in page
    assert "&quot;already_isolated&quot;: false" in page  # the result envelope
    assert "&quot;host&quot;: &quot;WS-FIN-07&quot;" in page  # the arguments
    assert re.search(
        r"<li><strong>ana</strong> <time [^>]+>[^<]+</time>: Confirmed with the finance team lead.</li>", page
    )
    trail = re.search(r'<p class="decision-trail"[^>]*>(.*?)</p>', page).group(1)
    assert re.findall(r'data-state="(\w+)"', trail) == ["pending", "approved", "executing", "succeeded"]


def test_the_page_script_gets_json_answers(client, analyst, waiting):
    _, request = waiting
    client.force_login(analyst)
    answer = decide(client, request, "approve", json=True)
    assert answer.status_code == 200
    assert answer.json()["request"]["state"] == "approved" and answer.json()["request"]["id"] == request.pk
    shown = card(answer.json()["card"], request)  # the card as it is now, from the one partial, for this user
    assert 'data-state="approved"' in shown and 'data-may-approve="true"' in shown
    again = decide(client, request, "approve", json=True)
    assert again.status_code == 409
    assert again.json()["state"] == "approved" and again.json()["detail"] == "This request was approved already."
    assert 'data-state="approved"' in card(again.json()["card"], request)


def test_rejected_with_a_reason_the_history_shows_it(client, analyst, waiting):
    _, request = waiting
    client.force_login(analyst)
    response = decide(client, request, "reject", "Finance server: isolate after month-end close.")
    assert response.status_code == 302 and response.url == reverse("investigations:action", args=[request.pk])
    page = page_of(client, response.url)
    assert "Rejected isolate_host on host=ws-fin-07: the agent is told your reason." in page  # the message
    assert re.search(
        r'<tr data-from="pending" data-to="rejected">.*?<td class="actor">user:ana</td>\s*'
        r'<td class="why">Finance server: isolate after month-end close.</td>',
        page,
        re.S,
    )
    assert "rejected by ana: Finance server: isolate after month-end close." in page
    assert "&quot;reason&quot;: &quot;rejected_by_analyst&quot;" in page
    assert not LabWrite.objects.exists()


def test_a_rejection_without_a_reason_is_refused_and_it_stays_pending(client, analyst, waiting):
    _, request = waiting
    client.force_login(analyst)
    answer = decide(client, request, "reject", "   ", json=True)
    assert answer.status_code == 400 and "Say why you reject it" in answer.json()["detail"]
    page = client.post(
        reverse("investigations:reject", args=[request.pk]), {"reason": ""}, follow=True
    ).content.decode()
    assert "Say why you reject it: the agent is told your reason." in page
    assert state_of(request) == "pending"


def test_a_decision_on_a_decided_request_says_so_and_shows_its_state(client, analyst, make_user, waiting):
    _, request = waiting
    client.force_login(analyst)
    decide(client, request, "reject", "not now")
    client.force_login(make_user("second-analyst", ANALYST))
    response = client.post(
        reverse("investigations:approve", args=[request.pk]),
        {"next": reverse("investigations:approvals")},
        follow=True,
    )
    page = response.content.decode()
    assert response.redirect_chain == [(reverse("investigations:approvals"), 302)]
    assert "This request was rejected already." in page
    assert 'data-state="rejected"' in card(recent_section(page), request)
    assert state_of(request) == "rejected"


def test_four_eyes_the_card_counts_approvals_and_one_person_cannot_give_both(client, analyst, make_user, received):
    ToolPolicy.objects.filter(tool="isolate_host").update(approvals_needed=2)
    _, investigation = received("LAB-SIEM-1001")
    agent.run(investigation.pk)
    request = investigation.action_requests.get(state="pending")
    client.force_login(analyst)
    first = client.post(reverse("investigations:approve", args=[request.pk]), {}, follow=True).content.decode()
    assert "Approval 1 of 2 recorded: another person must approve too." in first
    shown = card(first, request)
    assert re.search(r'<span class="approvals-given">1</span> of <span class="approvals-needed">2</span>', shown)
    assert "four-eyes" in shown
    again = decide(client, request, "approve", json=True)
    assert again.status_code == 409 and "another person must approve it" in again.json()["detail"]
    assert state_of(request) == "pending"

    client.force_login(make_user("second-analyst", ANALYST))
    assert decide(client, request, "approve").status_code == 302
    assert state_of(request) == "approved"


def test_an_unsafe_next_is_not_followed(client, analyst, waiting):
    _, request = waiting
    client.force_login(analyst)
    response = decide(client, request, "approve", next_url="https://evil.example/phish")
    assert response.status_code == 302 and response.url == reverse("investigations:action", args=[request.pk])


# -- who sees what -------------------------------------------------------------------------------
def test_a_user_without_a_role_sees_nothing_and_cannot_decide(client, make_user, waiting):
    _, request = waiting
    nobody = make_user("nobody")
    client.force_login(nobody)
    assert client.get(reverse("investigations:approvals")).status_code == 403
    assert client.get(reverse("investigations:action", args=[request.pk])).status_code == 404
    # Even granted the tool, without seeing the investigation there is nothing to decide on.
    assign_perm("investigations.approve_tool", nobody, ToolPolicy.objects.get(tool="isolate_host"))
    assert decide(client, request, "approve").status_code == 404
    assert decide(client, request, "reject", "no").status_code == 404
    assert state_of(request) == "pending"


def test_a_team_member_sees_only_the_requests_of_investigations_granted_to_them(
    client, make_user, waiting, make_investigation
):
    _, request = waiting
    member = make_user("team-member")
    assign_perm("investigations.view_investigation", member, make_investigation("OTHER-1"))
    client.force_login(member)
    page = page_of(client, reverse("investigations:approvals"))
    assert f'id="action-{request.pk}"' not in page and "Nothing waits for a decision." in page
    assert title_of(page) == "Approvals · Gatehouse"

    assign_perm("investigations.view_investigation", member, request.investigation)
    assert f'id="action-{request.pk}"' in queue_section(page_of(client, reverse("investigations:approvals")))


def test_the_pages_need_a_signed_in_user(client, waiting):
    _, request = waiting
    for url in (reverse("investigations:approvals"), reverse("investigations:action", args=[request.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url
    response = decide(client, request, "approve")
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert state_of(request) == "pending"


def test_a_missing_request_is_404(client, analyst):
    client.force_login(analyst)
    assert client.get(reverse("investigations:action", args=[999999])).status_code == 404
    assert client.post(reverse("investigations:approve", args=[999999])).status_code == 404


# -- navigation, the investigation page, escaping -------------------------------------------------
def test_the_navigation_counts_pending_requests_in_its_badge_and_the_title(client, analyst, manager, waiting):
    _, request = waiting
    for user in (analyst, manager):
        client.force_login(user)
        page = page_of(client, reverse("investigations:list"))
        assert nav_count(page) == ("1", False)
        assert title_of(page) == "(1) Investigations · Gatehouse"
        assert '<a href="/approvals/" data-nav="investigations:approvals">Approvals<span' in page

    client.force_login(analyst)
    decide(client, request, "reject", "not now")
    page = page_of(client, reverse("investigations:list"))
    assert nav_count(page) == ("0", True)
    assert title_of(page) == "Investigations · Gatehouse"


def test_the_count_is_one_query(client, analyst, waiting, django_assert_max_num_queries):
    from django.test import RequestFactory

    from console.context_processors import navigation

    web_request = RequestFactory().get("/")
    web_request.user = analyst
    context = navigation(web_request)
    analyst.has_perm("investigations.view_investigation")  # the permission cache, loaded by any page
    with django_assert_max_num_queries(1):
        assert str(context["pending_approvals"]) == "1"


def test_the_investigation_page_shows_the_decision_card(client, analyst, manager, waiting):
    investigation, request = waiting
    client.force_login(analyst)
    page = page_of(client, reverse("investigations:detail", args=[investigation.pk]))
    shown = card(section(page, "decisions", 'id="verdict"'), request)
    assert 'data-state="pending"' in shown and "disabled" not in shown
    assert (
        f'formaction="/approvals/{request.pk}/approve"' in shown
        and f'formaction="/approvals/{request.pk}/reject"' in shown
    )
    assert f'<input type="hidden" name="next" value="/investigations/{investigation.pk}/">' in shown
    assert 'data-may-approve="true"' in shown

    client.force_login(manager)
    shown = card(page_of(client, reverse("investigations:detail", args=[investigation.pk])), request)
    assert "You are not allowed to approve isolate_host." in shown and "disabled" in shown


def test_an_investigation_without_requests_hides_the_decisions(client, analyst, make_investigation):
    investigation = make_investigation()
    client.force_login(analyst)
    page = page_of(client, reverse("investigations:detail", args=[investigation.pk]))
    assert re.search(r'<section id="decisions" [^>]* hidden>', page)
    assert 'class="decision-card"' not in page


def test_the_agents_reason_is_escaped_everywhere(client, analyst, waiting):
    investigation, request = waiting
    ActionRequest.objects.filter(pk=request.pk).update(
        reason=f"isolate now {XSS}", arguments={"host": "WS-FIN-07", "reason": XSS}
    )
    client.force_login(analyst)
    for url in (
        reverse("investigations:approvals"),
        reverse("investigations:action", args=[request.pk]),
        reverse("investigations:detail", args=[investigation.pk]),
    ):
        page = page_of(client, url)
        assert XSS not in page, url
        assert "isolate now &lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in card(page, request), url


# -- the approvals socket --------------------------------------------------------------------------
def make_request(investigation: Investigation, tool_use_id: str = "toolu_test0001") -> ActionRequest:
    """A pending request saved directly (these tests are about who hears of it, not about the agent)."""
    return ActionRequest.objects.create(
        investigation=investigation,
        tool_use_id=tool_use_id,
        tool="isolate_host",
        server="edr-response",
        arguments={"host": "WS-TEST-1", "reason": "test"},
        target="host=ws-test-1",
        reason="test",
        idempotency_key=f"key-{investigation.pk}-{tool_use_id}",
        expires_at=timezone.now() + timedelta(hours=1),
    )


def granted_one_of_two(make_investigation, make_user) -> tuple[Investigation, Investigation, object]:
    """Investigations A and B, and a team member granted A only."""
    mine, other = make_investigation("A"), make_investigation("B")
    member = make_user("team-member")
    assign_perm("investigations.view_investigation", member, mine)
    return mine, other, member


async def test_the_socket_refuses_anonymous_users_and_users_who_see_no_investigation(make_user, make_investigation):
    await database_sync_to_async(make_investigation)()
    nobody = await database_sync_to_async(make_user)("nobody")
    admin = await database_sync_to_async(make_user)("root-of-tools", "admin")
    assert await refused(await socket("/ws/approvals/"))
    assert await refused(await socket("/ws/approvals/", nobody))
    assert await refused(await socket("/ws/approvals/", admin))


async def test_the_socket_sends_each_viewer_only_the_requests_they_may_see(make_user, make_investigation, analyst):
    mine, other, member = await database_sync_to_async(granted_one_of_two)(make_investigation, make_user)
    mine_request = await database_sync_to_async(make_request)(mine)
    other_request = await database_sync_to_async(make_request)(other)

    as_member = await socket("/ws/approvals/?queue=1", member)
    as_analyst = await socket("/ws/approvals/", analyst)
    assert (await as_member.connect())[0] and (await as_analyst.connect())[0]
    snapshot = await received(as_member, SnapshotMessage)
    assert snapshot["type"] == "snapshot" and snapshot["pending"] == 1
    assert [entry["request"]["id"] for entry in snapshot["requests"]] == snapshot["pending_ids"] == [mine_request.pk]
    assert "Test alert</a> <code>test:A</code>" in card(snapshot["requests"][0]["card"], mine_request)
    assert await received(as_analyst, SnapshotMessage) == {"type": "snapshot", "pending": 2}

    heard = []
    for request in (other_request, mine_request):  # each heard before the next: its count is of that moment
        await database_sync_to_async(approvals.reject)(request.pk, analyst, "not this one")
        heard.append(await received(as_analyst, RequestMessage))
    assert [(m["type"], m["request"]["id"], m["request"]["state"]) for m in heard] == [
        ("request", other_request.pk, "rejected"),
        ("request", mine_request.pk, "rejected"),
    ]
    assert [m["pending"] for m in heard] == [1, 0]
    only = await received(as_member, RequestMessage)
    assert (only["request"]["id"], only["request"]["outcome"], only["pending"]) == (
        mine_request.pk,
        "rejected by ana: not this one",
        0,
    )
    assert 'data-state="rejected"' in card(only["card"], mine_request)
    assert await as_member.receive_nothing(timeout=0.3)
    await as_member.disconnect()
    await as_analyst.disconnect()


async def test_a_page_of_requests_gets_them_as_they_are_now_when_its_socket_opens(
    make_user, make_investigation, analyst
):
    """An investigation's page (?investigation=<id>) and a request's page (?request=<id>) are sent their
    requests in the snapshot, so one made or decided between the page's render and the socket's open (or
    during a drop) reaches the page; each only to a user who may see it, in the variant for them."""
    mine, other, member = await database_sync_to_async(granted_one_of_two)(make_investigation, make_user)
    first = await database_sync_to_async(make_request)(mine)
    second = await database_sync_to_async(make_request)(mine, "toolu_test0002")
    elsewhere = await database_sync_to_async(make_request)(other, "toolu_test0003")
    await database_sync_to_async(approvals.reject)(second.pk, analyst, "not this one")

    async def snapshot(user, query: str) -> dict:
        communicator = await socket(f"/ws/approvals/?{query}", user)
        assert (await communicator.connect())[0]
        message = await received(communicator, SnapshotMessage)
        await communicator.disconnect()
        return message

    def shown(message: dict) -> list[tuple[int, str, str]]:
        return [
            (
                entry["request"]["id"],
                entry["request"]["state"],
                re.search(r'data-may-approve="(\w+)"', entry["card"])[1],
            )
            for entry in message["requests"]
        ]

    as_analyst = await snapshot(analyst, f"investigation={mine.pk}")
    assert as_analyst["pending"] == 2 and "pending_ids" not in as_analyst  # the queue's only
    assert shown(as_analyst) == [(first.pk, "pending", "true"), (second.pk, "rejected", "true")]
    assert 'data-state="rejected"' in card(as_analyst["requests"][1]["card"], second)
    assert shown(await snapshot(member, f"investigation={mine.pk}")) == [
        (first.pk, "pending", "false"),  # the member holds the grant, not the role that approves
        (second.pk, "rejected", "false"),
    ]
    assert shown(await snapshot(analyst, f"request={elsewhere.pk}")) == [(elsewhere.pk, "pending", "true")]
    # What the member may not see is not sent, whichever way it is asked for.
    assert shown(await snapshot(member, f"investigation={other.pk}")) == []
    assert shown(await snapshot(member, f"request={elsewhere.pk}")) == []
    assert (await snapshot(member, f"request={elsewhere.pk}"))["pending"] == 1
    for not_an_id in ("not-a-number", str(2**63), "9" * 5000):  # past what a database holds, past what int() takes
        assert await snapshot(analyst, f"investigation={not_an_id}") == {"type": "snapshot", "pending": 2}


async def test_the_socket_sends_the_card_escaped_in_the_variant_of_who_sees_it(make_investigation, analyst, manager):
    """The agent's reason arrives escaped (the partial's autoescape); the analyst, who may approve
    isolate_host, gets the card with usable buttons, the manager, who may not, the one that says so."""

    def waiting_with_a_hostile_reason():
        request = make_request(make_investigation("A"))
        ActionRequest.objects.filter(pk=request.pk).update(reason=f"isolate now {XSS}")
        return ActionRequest.objects.get(pk=request.pk)

    request = await database_sync_to_async(waiting_with_a_hostile_reason)()
    as_analyst, as_manager = (
        await socket("/ws/approvals/?queue=1", analyst),
        await socket("/ws/approvals/?queue=1", manager),
    )
    assert (await as_analyst.connect())[0] and (await as_manager.connect())[0]
    snapshots = [await received(as_analyst, SnapshotMessage), await received(as_manager, SnapshotMessage)]
    await database_sync_to_async(approvals.approve)(request.pk, analyst)
    changes = [await received(as_analyst, RequestMessage), await received(as_manager, RequestMessage)]
    for analysts, managers in ((snapshots[0]["requests"][0], snapshots[1]["requests"][0]), (changes[0], changes[1])):
        for shown in (analysts["card"], managers["card"]):
            assert XSS not in shown
            assert "isolate now &lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in card(shown, request)
        assert 'data-may-approve="true"' in analysts["card"] and '<p class="decision-note" hidden>' in analysts["card"]
        assert 'data-may-approve="false"' in managers["card"]
        assert '<p class="decision-note">You are not allowed to approve isolate_host.</p>' in managers["card"]
    assert [m["request"]["state"] for m in changes] == ["approved", "approved"]
    await as_analyst.disconnect()
    await as_manager.disconnect()


async def test_the_sockets_are_sent_what_the_publisher_chose_without_a_query_per_socket(
    make_user, make_investigation, analyst, manager, settings, monkeypatch
):
    """Who hears of a change, and their pending count, are worked out once when it is published; the
    open sockets only pass it on (once each, even to a user who both sees all and holds a grant)."""
    settings.SOCKET_RECHECK_SECONDS = 3600  # no access re-check falls due during the test: only per-change work counts
    investigation = await database_sync_to_async(make_investigation)("A")
    members = [await database_sync_to_async(make_user)(f"team-member-{n}") for n in range(3)]
    for user in (*members, analyst):
        await database_sync_to_async(assign_perm)("investigations.view_investigation", user, investigation)
    request = await database_sync_to_async(make_request)(investigation)
    await database_sync_to_async(make_request)(await database_sync_to_async(make_investigation)("B"), "toolu_test0002")
    sockets = [await socket("/ws/approvals/", user) for user in (*members, manager, analyst)]
    for communicator in sockets:
        assert (await communicator.connect())[0]
        await received(communicator, SnapshotMessage)
    queries = queries_made(monkeypatch)
    await database_sync_to_async(approvals.reject)(request.pk, analyst, "not this one")
    queries.clear()  # the decision's and the publisher's
    heard = [await received(communicator, RequestMessage) for communicator in sockets]
    assert queries == []
    assert [(m["request"]["id"], m["request"]["state"], m["pending"]) for m in heard] == (
        [(request.pk, "rejected", 0)] * 3
        + [(request.pk, "rejected", 1)] * 2  # the members see none pending; the others B's
    )
    for communicator in sockets:
        assert await communicator.receive_nothing(timeout=0.1)
        await communicator.disconnect()


def test_the_tools_a_user_may_approve_are_read_in_one_query_and_agree_with_each_decisions_check(
    analyst, manager, make_user, django_assert_max_num_queries
):
    # An approvals socket asks this again at every access re-check: once per tool was a query per write tool.
    approvals.ensure_policies()
    one_tool = make_user("one-tool")
    assign_perm("investigations.approve_tool", one_tool, ToolPolicy.objects.get(tool="isolate_host"))
    for user in (analyst, manager, one_tool):
        user = type(user).objects.get(pk=user.pk)  # no permission cache from an earlier check
        with django_assert_max_num_queries(2):
            tools = approvals.approvable_tools(user)
        assert tools == [tool for tool in sorted(approvals.write_tools()) if approvals.may_approve(user, tool)]
    assert approvals.approvable_tools(one_tool) == ["isolate_host"]
    assert approvals.approvable_tools(manager) == []
