"""The phished-user story end to end on a real directory: the `identity` server on a real slapd.

The lab SIEM's alert (LAB-SIEM-1001) is posted by an integration to a real console (`manage.py serve`)
whose worker (its own on the embedded default, a `celery worker` in production mode) investigates it on
the offline model. siem, edr, edr-response, ticketing and intel stay on the lab; `identity` is pointed at
slapd (tests/toolserver/slapd.py) as an admin points it. The analyst approves each request in Chromium;
the one to disable j.doe really locks her out of the directory (a bind fails), once, with one audit
record of the write. Approving it again, posting the same alert again, and investigating the alert again
write nothing more: the entry is not modified again. Re-enabling it makes her bind succeed again, and
the alert investigated once more then disables her again, for real (not the first disable's replay).
"""

import httpx2 as httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from core.roles import ANALYST
from investigations.approvals import services as approvals
from investigations.intake.services import create_integration, rate_bucket
from investigations.models import ActionRequest, AuditRecord, Event, Investigation
from investigations.tokens import create_api_token
from tests.browser.conftest import browser_page, console_with_worker, signed_in
from tests.toolserver.slapd import PEOPLE
from toolserver.adapters.ldap import PERMANENT_LOCK
from toolserver.gateway import CallContext, Gateway
from toolserver.lab import estate
from toolserver.ratelimit import get_rate_limiter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 120_000  # the investigation up to its next request, or an action and its outcome, on a slow machine
USER, PASSWORD = estate.PHISHED_USER, "jdoe-password-1"  # the phished user, as slapd.py loads her
ENTRY = f"uid={USER},{PEOPLE}"
INVALID_CREDENTIALS = 49  # RFC 4511: what a locked account's bind gets from ppolicy
WRITE_STATE = ("pwdAccountLockedTime", "modifyTimestamp", "entryCSN")  # changes with every write to the entry


@pytest.fixture
def console(identity_on_slapd, lab, lab_credentials, tmp_path_factory):
    """A console and its worker allowed to reach this test's slapd (and nothing else on loopback)."""
    allowed = f"127.0.0.1:{identity_on_slapd.port}"
    with console_with_worker(lab_credentials, tmp_path_factory, GATEHOUSE_BACKEND_ALLOWED_HOSTS=allowed) as console:
        yield console


@pytest.fixture
def siem(db):
    """The lab SIEM's integration: its token posts alerts of source lab-siem."""
    integration, token = create_integration("lab-siem")
    yield token
    get_rate_limiter().reset(rate_bucket(integration))


def post_story(console, token: str) -> httpx.Response:
    story = next(alert for alert in estate.demo_alerts() if alert["external_id"] == "LAB-SIEM-1001")
    return httpx.post(f"{console.url}/api/alerts", json=story, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def approve(page, tool: str, reason: str) -> ActionRequest:
    """Approve the investigation page's pending request for `tool` once it arrives; wait for its outcome."""
    card = page.locator(f'#decision-cards .decision-card[data-tool="{tool}"][data-state="pending"]')
    try:
        card.wait_for(timeout=RUN_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        raise AssertionError(f"no {tool} request came: {what_it_did(page)}") from None
    request_id = int(card.get_attribute("data-action-id"))
    card.locator("textarea[name=reason]").fill(reason)
    card.locator("button.approve").click()
    decided = page.locator(f"#decision-cards #action-{request_id}")
    expect(decided).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    return ActionRequest.objects.get(pk=request_id)


def what_it_did(page) -> str:
    """The investigation open in `page`: its status, each tool call's name and outcome, its requests beside
    the page's cards, and the agent's reasoning; so a request that never showed says whether it was never
    made (a read failed, or found something else: the agent asks for a write only once its reads confirm
    the need) or made and not shown."""
    investigation = Investigation.objects.get(pk=int(page.url.rstrip("/").split("/")[-1]))
    results = Event.objects.filter(investigation=investigation, kind=Event.Kind.TOOL_RESULT).order_by("seq")
    calls = [
        f"{event.data['name']}: {event.data['result'].get('reason') or event.data['result'].get('status')}"
        for event in results
    ]
    said = Event.objects.filter(investigation=investigation, kind=Event.Kind.TEXT).order_by("seq")
    reasoning = "".join(str(event.data.get("text", "")) for event in said)  # what it found in each answer
    requests = [f"{request.tool}: {request.state}" for request in investigation.action_requests.order_by("pk")]
    cards = page.eval_on_selector_all(
        "#decision-cards .decision-card", "cards => cards.map(card => `${card.dataset.tool}: ${card.dataset.state}`)"
    )
    return (
        f"investigation {investigation.pk} is {investigation.status}; its calls: {calls}; its requests: {requests};"
        f" the page's cards: {cards}; it said: {reasoning}"
    )


def approve_again(page, console, request: ActionRequest):
    """What a stale approval form sends: the decision posted again from this signed-in browser."""
    csrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    return page.request.post(
        f"{console.url}/approvals/{request.pk}/approve",
        form={"reason": "Approving it too."},
        headers={"X-CSRFToken": csrf, "Accept": "application/json"},
    )


def investigate_again(page, console, token: str, investigation: Investigation) -> int:
    """A new investigation of the same alert (the API's "again"), its page open in `page`."""
    started = httpx.post(
        f"{console.url}/api/investigations/{investigation.pk}/again",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert started.status_code == 201, started.text
    page.goto(f"{console.url}/investigations/{started.json()['id']}/")
    return started.json()["id"]


def disable_records() -> list[str]:
    return list(AuditRecord.objects.filter(tool="disable_account").order_by("seq").values_list("outcome", flat=True))


def test_the_phished_user_is_disabled_in_the_directory_once_approved_and_never_again(
    console, identity_on_slapd, siem, make_user, browser, page
):
    slapd = identity_on_slapd
    assert slapd.bind_as(USER, PASSWORD) == (True, 0)
    make_user("ana-phish", ANALYST)
    second = make_user("ben-phish", ANALYST)

    posted = post_story(console, siem)
    assert posted.status_code == 201, posted.text
    investigation = Investigation.objects.get(pk=posted.json()["investigation_id"])
    signed_in(page, console, "ana-phish")
    page.goto(f"{console.url}/investigations/{investigation.pk}/")

    # The story: isolate the workstation (the lab's EDR), disable the account (slapd), open the ticket (the lab).
    approve(page, "isolate_host", "The host ran the loader: contain it.")
    assert slapd.bind_as(USER, PASSWORD) == (True, 0)  # nothing reached the directory before its own approval
    disable = approve(page, "disable_account", "Her password was used from a Tor exit: disable it.")
    assert disable.outcome == f"{USER} disabled"
    assert slapd.bind_as(USER, PASSWORD) == (False, INVALID_CREDENTIALS)
    written = slapd.read(ENTRY, *WRITE_STATE)
    assert written["pwdAccountLockedTime"] == [PERMANENT_LOCK]
    assert disable_records() == ["pending_approval", "approved", "dispatched", "ok"]
    approve(page, "open_ticket", "File it.")
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_MS)

    # Approving it again, from another analyst's browser: refused, it was decided already.
    with browser_page(browser) as other:
        signed_in(other, console, second.username)
        again = approve_again(other, console, disable)
        assert again.status == 409 and again.json()["state"] == "succeeded", again.text
    # The same approved request run again (a redelivered task): it was done, so nothing is sent.
    approvals.execute(disable.pk)

    # The same alert posted again: the first alert and investigation, nothing new started.
    reposted = post_story(console, siem)
    assert reposted.status_code == 200, reposted.text
    assert (reposted.json()["investigation_id"], reposted.json()["created"]) == (investigation.pk, False)
    assert Investigation.objects.count() == 1

    # The alert investigated again: the account is disabled already (the directory says so), so the
    # agent does not ask; its ticket, asked for again for the same alert, is the first one.
    _, token = create_api_token(second, "again")
    again_id = investigate_again(page, console, token, investigation)
    ticket = approve(page, "open_ticket", "File it, again.")
    assert ticket.outcome.endswith("(already done for this alert: the first result)")
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_MS)
    assert not ActionRequest.objects.filter(investigation_id=again_id, tool="disable_account").exists()

    # The write itself asked again for the same alert, as an approved action would: the first result, replayed.
    context = CallContext(
        investigation.correlation_id, investigation.alert.trigger, approval=f"action-request-{disable.pk}"
    )
    replayed = Gateway().call("disable_account", disable.arguments, context)
    assert replayed["status"] == "ok" and replayed["data"]["replayed"] is True, replayed

    # Through all of it: one write to the directory, one audit record of it.
    assert slapd.read(ENTRY, *WRITE_STATE) == written
    assert slapd.bind_as(USER, PASSWORD) == (False, INVALID_CREDENTIALS)
    assert disable_records() == ["pending_approval", "approved", "dispatched", "ok", "replayed"]

    # Re-enabled (the playbook never asks; the gateway, as an approved action would): she binds again.
    enabled = Gateway().call(
        "enable_account",
        {"username": USER, "reason": "Password reset with her in person."},
        CallContext(investigation.correlation_id, investigation.alert.trigger, approval="test-approval"),
    )
    assert enabled["status"] == "ok" and enabled["data"]["already"] is False, enabled
    assert slapd.read(ENTRY, *WRITE_STATE)["pwdAccountLockedTime"] == []  # the lock deleted
    assert slapd.bind_as(USER, PASSWORD) == (True, 0)

    # Investigated again now that she can sign in: the agent asks to disable her again, and that is sent
    # to the directory, not answered with the first disable's result (the enable since undid it).
    investigate_again(page, console, token, investigation)
    redisabled = approve(page, "disable_account", "Still her session in the attacker's hands: disable it again.")
    assert redisabled.outcome == f"{USER} disabled"
    assert slapd.bind_as(USER, PASSWORD) == (False, INVALID_CREDENTIALS)
    assert slapd.read(ENTRY, *WRITE_STATE)["pwdAccountLockedTime"] == [PERMANENT_LOCK]
    assert disable_records()[-4:] == ["pending_approval", "approved", "dispatched", "ok"]
    approve(page, "open_ticket", "File it, once more.")
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_MS)
