"""An analyst watches a request arrive in the approval queue, approves it on the investigation page,
and sees the outcome arrive on the decision card: all live, no reload.

A real `manage.py serve` console on this run's database; on the embedded default it runs the
investigation and the approved action in its own worker, in production mode a separate `celery
worker` process does, publishing through Redis to the console's websockets. The lab counts the
writes it receives.
"""

import pytest
from playwright.sync_api import expect

from core.roles import ANALYST
from investigations.models import ActionRequest
from tests.browser.conftest import raise_story, signed_in
from toolserver.lab.models import LabWrite

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 120_000  # the investigation up to its request, or the action and its outcome, on a slow machine
LIVE = "() => document.getElementById('live-indicator').dataset.state === 'live'"


@pytest.fixture
def queue_page(lab, console, make_user, page):
    """A signed-in analyst on the approval queue, listening, before any request exists."""
    make_user("ana-approvals", ANALYST)
    signed_in(page, console, "ana-approvals")
    page.goto(f"{console.url}/approvals/")
    page.wait_for_function(LIVE)
    page.evaluate("window.__loaded = true")
    assert page.locator(".decision-card").count() == 0
    assert page.locator("#nav-approvals-count").is_hidden()
    assert page.title() == "Approvals · Gatehouse"
    return page


def test_a_request_arrives_live_and_its_approval_shows_the_outcome_on_the_card(queue_page, console):
    queue = queue_page
    investigation_page = queue.context.new_page()  # the same analyst, in a second tab
    investigation_id = raise_story(investigation_page, console, "LAB-SIEM-1001")
    investigation_page.evaluate("window.__loaded = true")

    # The queue: the request appears without a reload, with the count in the navigation and the title.
    waiting = queue.locator('#approval-queue .decision-card[data-state="pending"][data-tool="isolate_host"]')
    waiting.wait_for(timeout=RUN_TIMEOUT_MS)
    request_id = int(waiting.get_attribute("data-action-id"))
    request = ActionRequest.objects.get(pk=request_id)
    assert (request.investigation_id, request.tool, request.state) == (investigation_id, "isolate_host", "pending")
    expect(waiting.locator(".decision-target")).to_have_text("host=ws-fin-07")
    expect(waiting.locator(".decision-reason")).to_have_text(request.reason)
    expect(waiting.locator(".decision-evidence a")).to_have_count(len(request.evidence))
    expect(waiting.locator(".decision-alert code")).to_have_text(
        request.investigation.alert.trigger
    )  # console:<generated id>
    expect(waiting.locator(".time-left")).to_have_text("in 59 min")
    expect(queue.locator("#nav-approvals-count")).to_have_text("1")
    expect(queue).to_have_title("(1) Approvals · Gatehouse")
    assert not LabWrite.objects.exists()

    # The investigation page, open since the alert was raised: the card is there (it arrives live if it came after the load).
    card = investigation_page.locator(f"#decision-cards #action-{request_id}")
    expect(card).to_have_attribute("data-state", "pending", timeout=RUN_TIMEOUT_MS)
    expect(
        investigation_page.locator(f'#transcript .action-line[data-action-id="{request_id}"][data-state="pending"]')
    ).to_have_count(1)
    card.locator("textarea[name=reason]").fill("Confirmed with the finance team lead.")
    card.locator("button.approve").click()

    expect(card.locator(".decision-outcome")).to_have_text("WS-FIN-07 isolated", timeout=RUN_TIMEOUT_MS)
    expect(card).to_have_attribute("data-state", "succeeded")
    expect(card.locator(".decision-form")).to_be_hidden()
    expect(card.locator(".trail-state")).to_have_text(["pending", "approved", "executing", "succeeded"])
    assert investigation_page.evaluate("window.__loaded") is True, "the investigation page reloaded"
    outcome = f'#transcript .action-line[data-action-id="{request_id}"][data-state="succeeded"] .action-outcome'
    expect(investigation_page.locator(outcome)).to_have_text(" — WS-FIN-07 isolated")

    # The queue moved it below, with its outcome; it never reloaded either.
    decided = queue.locator(f"#approval-recent #action-{request_id}")
    expect(decided).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(decided.locator(".decision-outcome")).to_have_text("WS-FIN-07 isolated")
    expect(queue.locator(f"#approval-queue #action-{request_id}")).to_have_count(0)
    assert queue.evaluate("window.__loaded") is True, "the queue reloaded"

    ActionRequest.objects.get(pk=request_id, state="succeeded", outcome="WS-FIN-07 isolated")
    assert LabWrite.objects.filter(action="isolate_host").count() == 1

    # The investigation resumed with the result and asks for the next action: a new card on both
    # pages, live. Waiting for the investigation to wait again also lets the worker go idle before
    # the test's database is emptied.
    following = investigation_page.locator(
        '#decision-cards .decision-card[data-tool="disable_account"][data-state="pending"]'
    )
    following.wait_for(timeout=RUN_TIMEOUT_MS)
    expect(investigation_page.locator("#status")).to_have_attribute("data-status", "waiting", timeout=RUN_TIMEOUT_MS)
    expect(queue.locator('#approval-queue .decision-card[data-tool="disable_account"]')).to_have_count(1)
    expect(queue.locator("#nav-approvals-count")).to_have_text("1")
    assert investigation_page.evaluate("window.__loaded") is True and queue.evaluate("window.__loaded") is True
    assert LabWrite.objects.count() == 1  # nothing else reached the lab: the next action waits for a decision
