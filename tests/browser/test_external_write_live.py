"""An admin's own MCP server in the investigation flow, in the browser: server-memory (over stdio,
`make mcp-servers`) registered through administration, its create_entities accepted as a write. The
offline model, offered it, records the beaconing story's confirmed finding in the graph
(playbook.graph_tool): the request arrives live in the approval queue of an analyst signed in with a
passkey, nothing is written until she steps up and approves, then exactly one entity is in the graph
file, a repeat of the write for the alert replays, and the audit trail holds the call.

A real `manage.py serve` console on this run's database with the second factor and step-up on, reached
as `localhost` (a passkey's relying party is a host name); its own in-process worker on the embedded
default, a `celery worker` in production mode: either starts its own server-memory process.
"""

import json

import pytest
from playwright.sync_api import expect

from console.manage import administration
from core.roles import ANALYST
from investigations.models import ActionApproval, ActionRequest, AuditRecord, Investigation
from tests.browser.conftest import console_with_worker, raise_story
from tests.browser.test_passkeys import password, with_authenticator
from tests.support import accept_as_listed, wait_until
from tests.toolserver.test_external_servers import MEMORY_JS
from toolserver.gateway import CallContext, Gateway
from toolserver.lab import estate
from toolserver.lab.models import LabWrite
from toolserver.models import Tool
from toolserver.supervisor import get_supervisor

pytestmark = [pytest.mark.browser, pytest.mark.mfa, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 120_000  # the investigation up to its request, or the action and its outcome, on a slow machine
LIVE = "() => document.getElementById('live-indicator').dataset.state === 'live'"
GRAPH_TOOL = "memory__create_entities"
BEACON = "LAB-SIEM-1002"  # the beaconing story: intel confirms the domain, so the model records and contains


@pytest.fixture
def memory(admin_user, tmp_path):
    """server-memory registered by an admin, its tools pinned, create_entities accepted as a write."""
    graph = tmp_path / "memory.jsonl"
    server = administration.register_external_server(
        admin_user,
        {"name": "memory", "command": "node", "args": [str(MEMORY_JS)], "env": {"MEMORY_FILE_PATH": str(graph)}},
    )
    try:
        administration.discover(server)
        accept_as_listed(Tool.objects.get(name=GRAPH_TOOL), admin_user, access="write", target_args=["entities"])
        yield graph
    finally:
        get_supervisor().restart("memory")  # the process discovery started here stops with the test


@pytest.fixture
def mfa_console(lab, memory, lab_credentials, tmp_path_factory):
    """Started after the registration, so its worker and its sockets know the server and its policy."""
    with console_with_worker(
        lab_credentials,
        tmp_path_factory,
        GATEHOUSE_MFA_REQUIRED="true",
        GATEHOUSE_STEP_UP_MINUTES="5",
        GATEHOUSE_IDLE_MINUTES="30",
    ) as console:
        console.url = f"http://localhost:{console.port}"
        yield console


def entities_in(graph) -> list[str]:
    """The entity names in server-memory's graph file, one JSON line each."""
    if not graph.exists():
        return []
    lines = [json.loads(line) for line in graph.read_text().splitlines() if line.strip()]
    return [line["name"] for line in lines if line.get("type") == "entity"]


def signed_in_with_a_passkey(page, console, username: str) -> None:
    """Enrol a passkey when the console asks for a second factor, then sign in with it after the password."""
    with_authenticator(page)
    password(page, console, username)
    page.wait_for_url("**/account/second-factor/**")
    page.click("#passkey-register-button")
    expect(page.locator("#passkey-register-status-message")).to_have_text("Registration successful!")
    page.context.clear_cookies()
    password(page, console, username)
    page.wait_for_url("**/account/step-up/**")
    page.click("#passkey-verification-button")
    page.wait_for_url(f"{console.url}/")


def test_a_gated_external_write_arrives_in_the_queue_and_fires_once_after_a_stepped_up_approval(
    mfa_console, memory, page, make_user
):
    console, graph = mfa_console, memory
    make_user("ana-graph", ANALYST)
    signed_in_with_a_passkey(page, console, "ana-graph")
    queue = page
    queue.goto(f"{console.url}/approvals/")
    queue.wait_for_function(LIVE)
    queue.evaluate("window.__loaded = true")
    assert queue.locator(".decision-card").count() == 0

    other_tab = queue.context.new_page()  # the same analyst raises the alert
    investigation_id = raise_story(other_tab, console, BEACON)
    host = next(alert for alert in estate.demo_alerts() if alert["external_id"] == BEACON)["host"]

    # The graph write arrives in the queue without a reload; nothing is written yet.
    waiting = queue.locator(f'#approval-queue .decision-card[data-state="pending"][data-tool="{GRAPH_TOOL}"]')
    waiting.wait_for(timeout=RUN_TIMEOUT_MS)
    request = ActionRequest.objects.get(pk=int(waiting.get_attribute("data-action-id")))
    assert (request.investigation_id, request.server, request.state) == (investigation_id, "memory", "pending")
    [entity] = request.arguments["entities"]
    assert (entity["name"], entity["entityType"]) == (host, "host")
    alert = request.investigation.alert  # raised through the form: its id is the console's
    assert entity["observations"][0] == f"alert {alert.external_id}: malicious, confirmed by intel"
    assert any("cdn-update-check.net" in line for line in entity["observations"])
    expect(queue.locator("#nav-approvals-count")).to_have_text("1")
    assert entities_in(graph) == [] and not LabWrite.objects.exists()  # the model asked for it first

    # A fresh proof of presence (the passkey: its virtual authenticator is this tab's), back to the
    # queue, and the approval on its card.
    queue.goto(f"{console.url}/account/step-up/?next=/approvals/")
    queue.click("#passkey-verification-button")
    queue.wait_for_url(f"{console.url}/approvals/")
    queue.wait_for_function(LIVE)
    queue.evaluate("window.__loaded = true")
    waiting.locator("button.approve").click()

    decided = queue.locator(f"#approval-recent #action-{request.pk}")
    expect(decided).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(decided.locator(".decision-outcome")).to_have_text(f"{GRAPH_TOOL} succeeded")
    assert queue.evaluate("window.__loaded") is True, "the queue reloaded"
    assert entities_in(graph) == [host]  # exactly one effect, in the server's own file
    approval = ActionApproval.objects.get(request=request)
    assert (approval.user.username, approval.proof_factor) == ("ana-graph", "webauthn")

    # A repeat of the write for the alert (what a second run of the approved action sends) replays.
    request.refresh_from_db()
    investigation = Investigation.objects.select_related("alert").get(pk=investigation_id)
    repeat = Gateway().call(
        GRAPH_TOOL,
        request.arguments,
        CallContext(investigation.correlation_id, investigation.alert.trigger, approval=f"action-request-{request.pk}"),
    )
    assert repeat["status"] == "ok" and repeat["data"]["replayed"] is True
    assert entities_in(graph) == [host]

    # The audit trail: the request, the decision with its proof, one dispatch, one answer, the replay.
    trail = AuditRecord.objects.filter(correlation_id=investigation.correlation_id, tool=GRAPH_TOOL).order_by("seq")
    assert [(record.kind, record.outcome) for record in trail] == [
        ("decision", "pending_approval"),
        ("decision", "approved"),
        ("tool_call", "dispatched"),
        ("tool_call", "ok"),
        ("tool_call", "replayed"),
    ]
    assert trail.get(outcome="dispatched").actor == "user:ana-graph"
    decision = AuditRecord.objects.get(kind=AuditRecord.Kind.DECISION, outcome="approved", tool=GRAPH_TOOL)
    assert decision.extra["proof"]["factor"] == "webauthn"

    # The investigation resumed with the result and asks for the containment next: live in the queue.
    # Waiting for it to wait again also lets the worker go idle before the test's database is emptied.
    following = queue.locator('#approval-queue .decision-card[data-state="pending"][data-tool="isolate_host"]')
    following.wait_for(timeout=RUN_TIMEOUT_MS)
    wait_until(
        lambda: Investigation.objects.get(pk=investigation_id).status == "waiting",
        timeout=RUN_TIMEOUT_MS / 1000,
        what="the investigation waiting on its next request",
    )
    assert entities_in(graph) == [host]
