"""An analyst raises an alert and watches its investigation stream into the page, live.

The console here is a real `manage.py serve` process whose offline model streams slowly (40 ms
between chunks), so the investigation is still running when its page opens. On the embedded
default that process runs the investigation in its own worker; in production mode a separate
`celery worker` process does, publishing through Redis to the console's websocket.
"""

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from core.roles import ANALYST
from investigations.approvals import services as approvals
from investigations.models import ActionRequest, Event, Investigation
from investigations.runs.events import record_event
from tests.browser.conftest import console_with_worker, raise_story, signed_in
from tests.investigations.test_approval_pages import make_request
from tests.investigations.test_websocket import SPOOFED_SHOWN, hiding_request, record_action, spoofed_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXT_LENGTH = (
    "Array.from(document.querySelectorAll('#transcript .text-block')).reduce((n, p) => n + p.textContent.length, 0)"
)
LAST_SEQ = "Number(document.getElementById('investigation').dataset.lastSeq || 0)"
RUN_TIMEOUT_MS = 120_000  # the whole paced story, with room for a slow machine


@pytest.fixture(scope="module")
def slow_console(django_db_setup, django_db_blocker, lab_credentials, tmp_path_factory):
    """A console whose offline model streams slowly, and its worker."""
    with console_with_worker(lab_credentials, tmp_path_factory, model_delay_ms=40) as console:
        yield console


@pytest.fixture
def analyst_page(lab, slow_console, make_user, page):
    """A signed-in analyst's page on the slow console, with the lab estate seeded."""
    make_user("ana-live", ANALYST)
    return signed_in(page, slow_console, "ana-live")


def saved_text_blocks(investigation: Investigation) -> list[str]:
    """The saved text events joined per block, as the page shows them (up to the verdict block)."""
    blocks: dict[str, str] = {}
    for event in investigation.events.filter(kind=Event.Kind.TEXT).order_by("seq"):
        blocks[event.data["block"]] = blocks.get(event.data["block"], "") + event.data["text"]
    return [text.split("<verdict>")[0].rstrip() for text in blocks.values()]


def assert_page_shows_the_saved_transcript(page, investigation: Investigation) -> None:
    events = list(investigation.events.order_by("seq"))
    kinds = [event.kind for event in events]
    assert kinds[-2:] == ["verdict", "status"] and investigation.status == "completed"

    shown = page.locator("#transcript .text-block").all_text_contents()
    assert shown == saved_text_blocks(investigation)
    assert not any("<verdict>" in text for text in shown)
    assert "Verdict: benign." in shown[-1]

    calls = [event.data for event in events if event.kind == Event.Kind.TOOL_CALL]
    results = {
        event.data["tool_use_id"]: event.data["result"] for event in events if event.kind == Event.Kind.TOOL_RESULT
    }
    entries = page.locator("#transcript .tool-call[data-tool-use-id]")
    assert entries.evaluate_all("els => els.map(e => e.dataset.toolUseId)") == [call["tool_use_id"] for call in calls]
    for call in calls:  # each result attached to its call, as ok or as a typed error
        entry = page.locator(f'.tool-call[data-tool-use-id="{call["tool_use_id"]}"]')
        assert entry.locator(".tool-name").inner_text() == call["name"]
        assert entry.locator(".write-badge").count() == (1 if call["write"] else 0)
        result = results[call["tool_use_id"]]
        if result["status"] == "error":
            assert entry.locator(".tool-result.error .reason").inner_text() == result["reason"]
        else:
            assert entry.locator(".tool-result.ok details").count() == 1
    assert page.locator(".tool-result.error").count() == sum(r["status"] == "error" for r in results.values())
    assert page.locator(".tool-result.ok").count() == sum(r["status"] == "ok" for r in results.values()) > 0
    # each status event drawn once: none lost, none repeated
    assert page.locator("#transcript .status-line").count() == kinds.count(Event.Kind.STATUS)

    assert page.locator("#verdict").get_attribute("data-verdict") == investigation.verdict == "benign"
    assert page.locator("#verdict .verdict-evidence li").count() == len(investigation.evidence) > 0
    assert page.locator("#status").get_attribute("data-status") == "completed"
    assert page.locator(".model-name").first.inner_text() == "offline model"


def test_the_transcript_streams_into_the_page_without_a_reload(analyst_page, slow_console):
    page = analyst_page
    investigation_id = raise_story(page, slow_console, "LAB-SIEM-1003")

    page.evaluate("window.__loaded = true")
    at_load = page.evaluate(TEXT_LENGTH)
    assert page.locator("#verdict[data-verdict]").count() == 0, "the investigation had already finished at load"

    page.wait_for_function(f"() => {TEXT_LENGTH} > {at_load}", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'live'")
    page.wait_for_selector("#verdict[data-verdict]", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.getElementById('status').dataset.status === 'completed'", timeout=RUN_TIMEOUT_MS
    )

    assert page.evaluate("window.__loaded") is True, "the page reloaded"
    assert page.evaluate(TEXT_LENGTH) > at_load
    assert_page_shows_the_saved_transcript(page, Investigation.objects.get(pk=investigation_id))


class DroppingRelay:
    """Passes the page's investigation websocket through, and can cut the first connection.

    After the cut it forwards nothing more on that connection, so the last seq it forwarded is
    the last one the page can have drawn: the page must reconnect asking for what follows it.
    """

    def __init__(self):
        self.urls: list[str] = []
        self.forwarded_seq = 0
        self.cut = False
        self.first = None

    def __call__(self, ws):
        self.urls.append(ws.url)
        server = ws.connect_to_server()
        if self.first is None:
            self.first = ws
            server.on_message(self._forward)

    def _forward(self, message):
        if self.cut:
            return
        payload = json.loads(message)
        if payload.get("type") == "event":
            self.forwarded_seq = payload["event"]["seq"]
        self.first.send(message)

    def drop(self) -> int:
        self.cut = True
        self.first.close()
        return self.forwarded_seq


def after_of(url: str) -> int:
    return int(parse_qs(urlparse(url).query)["after"][0])


def test_a_dropped_socket_reconnects_from_the_latest_event(analyst_page, slow_console):
    page = analyst_page
    relay = DroppingRelay()
    page.route_web_socket(re.compile(r"/ws/investigations/\d+/"), relay)
    investigation_id = raise_story(page, slow_console, "LAB-SIEM-1003")
    page.evaluate("window.__loaded = true")
    embedded = page.evaluate("JSON.parse(document.getElementById('investigation-events').textContent).map(e => e.seq)")
    assert after_of(relay.urls[0]) == embedded[-1]  # live from where the saved events end

    at_load = page.evaluate(TEXT_LENGTH)
    page.wait_for_function(f"() => {TEXT_LENGTH} > {at_load}", timeout=RUN_TIMEOUT_MS)
    dropped_at = relay.drop()
    page.wait_for_function(f"() => {LAST_SEQ} > {dropped_at}", timeout=RUN_TIMEOUT_MS)
    assert len(relay.urls) == 2
    assert after_of(relay.urls[1]) == dropped_at

    page.wait_for_function(
        "() => document.getElementById('status').dataset.status === 'completed'", timeout=RUN_TIMEOUT_MS
    )
    assert page.evaluate("window.__loaded") is True, "the page reloaded"
    assert_page_shows_the_saved_transcript(page, Investigation.objects.get(pk=investigation_id))


def test_an_actions_line_shows_hidden_characters_as_escapes_as_its_card_does(
    live_console, make_investigation, make_user, page
):
    """A target whose right-to-left override would reorder the host name reads in the transcript as on
    the decision card beside it: saved at load, and sent by the socket after it."""
    make_user("ana-hidden", ANALYST)
    request = hiding_request(make_investigation("HIDDEN-1"))
    record_action(request)
    relay = DroppingRelay()
    page.route_web_socket(re.compile(r"/ws/investigations/\d+/"), relay)
    signed_in(page, live_console, "ana-hidden")
    page.goto(f"{live_console.url}/investigations/{request.investigation_id}/")
    page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'live'")

    target, outcome = "host=WS-FIN-07\\u202e\\u200bexe.gpj", " — WS-FIN-07\\u202e isolated\\u2028forged line"
    saved = page.locator(f'#transcript .action-line[data-action-id="{request.pk}"][data-state="pending"]')
    expect(saved.locator(".action-text")).to_have_text(f"isolate_host {target}: ")
    expect(saved.locator(".action-outcome")).to_have_text(outcome)
    expect(page.locator(f"#action-{request.pk} .decision-target")).to_have_text(target)

    # The next event reaches the page through its socket: live, or (on the embedded console, whose
    # channel layer this process does not share) in the backlog the reconnect asks for.
    ActionRequest.objects.filter(pk=request.pk).update(state=ActionRequest.State.EXPIRED)
    request.refresh_from_db()
    record_action(request)
    relay.drop()
    sent = page.locator(f'#transcript .action-line[data-action-id="{request.pk}"][data-state="expired"]')
    expect(sent.locator(".action-text")).to_have_text(f"isolate_host {target}: ", timeout=RUN_TIMEOUT_MS)
    expect(sent.locator(".action-outcome")).to_have_text(outcome)
    assert not {"\u202e", "\u200b", "\u2028"} & set(page.locator("#transcript").text_content())


def test_a_tool_results_text_shows_hidden_characters_as_escapes_once(live_console, make_investigation, make_user, page):
    """A backend's data read in the transcript as recorded: a file name whose right-to-left override and
    zero-width space would read it otherwise shows them as their escapes, each once (never a doubled
    backslash of pretty-printed JSON), in a tool's result and arguments and the model's text; saved at
    load, and sent by the socket after it."""
    make_user("ana-spoofed", ANALYST)
    investigation = make_investigation("SPOOFED-1")
    events = spoofed_events()[:3]  # the model's text, a tool call, its result
    for kind, data in events:
        record_event(investigation.pk, kind, data)
    relay = DroppingRelay()
    page.route_web_socket(re.compile(r"/ws/investigations/\d+/"), relay)
    signed_in(page, live_console, "ana-spoofed")
    page.goto(f"{live_console.url}/investigations/{investigation.pk}/")
    page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'live'")

    def escaped_json(value: dict) -> str:  # pretty JSON, each hiding character as its escape
        text = json.dumps(value, indent=2, ensure_ascii=False)
        return text.replace("\u202e", "\\u202e").replace("\u200b", "\\u200b")

    call, result = (investigation.events.get(kind=kind).data for kind in ("tool_call", "tool_result"))  # as stored
    entries = page.locator('#transcript .tool-call[data-tool-use-id="toolu_s1"]')
    expect(entries.locator(".tool-result.ok pre.json")).to_have_count(1)
    assert entries.locator(".tool-result.ok pre.json").text_content() == escaped_json(result["result"])
    assert f'"file\\u200b": "{SPOOFED_SHOWN}"' in escaped_json(result["result"])  # the escape, once
    assert entries.locator("pre.tool-input").text_content() == escaped_json(call["input"])
    assert page.locator("#transcript .text-block").text_content() == f"The download was {SPOOFED_SHOWN}."

    # The same again reaches the page through its socket: live, or (on the embedded console, whose
    # channel layer this process does not share) in the backlog the reconnect asks for.
    for kind, data in events:
        record_event(investigation.pk, kind, data)
    relay.drop()
    expect(entries.locator(".tool-result.ok pre.json")).to_have_count(2, timeout=RUN_TIMEOUT_MS)
    shown = entries.locator(".tool-result.ok pre.json").all_text_contents()
    assert shown == [escaped_json(result["result"])] * 2
    assert entries.locator("pre.tool-input").all_text_contents() == [escaped_json(call["input"])] * 2
    transcript = page.locator("#transcript").text_content()
    assert not {"\u202e", "\u200b"} & set(transcript) and "\\\\" not in transcript


def test_signing_out_in_another_tab_ends_the_live_page_at_once(live_console, make_investigation, make_user, page):
    """The sign-out closes the open page's sockets (4403) without waiting for an event, and the page
    says so instead of reconnecting."""
    make_user("ana-leaving", ANALYST)
    investigation = make_investigation()
    signed_in(page, live_console, "ana-leaving")
    page.goto(f"{live_console.url}/investigations/{investigation.pk}/")
    page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'live'")

    other_tab = page.context.new_page()
    other_tab.goto(f"{live_console.url}/investigations/")
    other_tab.click(".topbar form[action$='/logout/'] button")
    other_tab.wait_for_load_state("load")

    page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'ended'", timeout=10_000)
    assert page.locator("#live-indicator").text_content() == "access ended: reload"


def test_a_link_whose_fragment_does_not_decode_still_streams_the_transcript(analyst_page, slow_console):
    """A link ending in a fragment that is not valid percent-encoding (…/#%E0, e.g. pasted into chat)
    names no element: the page opens its transcript socket and streams as any other."""
    page = analyst_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    investigation_id = raise_story(page, slow_console, "LAB-SIEM-1003")
    page.goto(f"{slow_console.url}/investigations/")
    page.goto(f"{slow_console.url}/investigations/{investigation_id}/#%E0")
    at_load = page.evaluate(TEXT_LENGTH)
    assert page.locator("#verdict[data-verdict]").count() == 0, "the investigation had already finished at load"

    page.wait_for_function(f"() => {TEXT_LENGTH} > {at_load}", timeout=RUN_TIMEOUT_MS)
    page.wait_for_selector("#verdict[data-verdict]", timeout=RUN_TIMEOUT_MS)
    assert errors == []


class HeldSocket:
    """Keeps the page's approvals socket off the console until released: each connection before then is
    closed at once, as one still opening or dropped would be, and the page retries (live.js's backoff)."""

    def __init__(self):
        self.held = True
        self.urls: list[str] = []

    def __call__(self, ws):
        self.urls.append(ws.url)
        if self.held:
            ws.close()
        else:
            ws.connect_to_server()


def test_a_request_made_before_the_approvals_socket_opens_still_gets_its_card(
    live_console, make_investigation, make_user, page
):
    """The page is rendered before the agent's request is saved, and its approvals socket opens after:
    the card comes in the socket's snapshot (a run under load once waited two minutes for one)."""
    make_user("ana-late", ANALYST)
    investigation = make_investigation("LATE-1")
    held = HeldSocket()
    page.route_web_socket(re.compile(r"/ws/approvals/"), held)
    signed_in(page, live_console, "ana-late")
    page.goto(f"{live_console.url}/investigations/{investigation.pk}/")
    expect(page.locator("#decisions")).to_be_hidden()  # rendered with no request

    request = make_request(investigation)
    held.held = False
    card = page.locator(f'#decision-cards .decision-card[data-action-id="{request.pk}"]')
    expect(card).to_have_attribute("data-state", "pending", timeout=RUN_TIMEOUT_MS)
    expect(card.locator(".decision-target")).to_have_text(request.target_text)
    assert held.urls[-1].endswith(f"/ws/approvals/?investigation={investigation.pk}")


def test_a_request_decided_while_its_pages_socket_was_away_shows_the_decision_once_back(
    live_console, make_investigation, make_user, page
):
    """A request's page whose approvals socket was away when the request was decided shows the decision
    once the socket is back: its snapshot carries the card as it is now."""
    analyst = make_user("ana-away", ANALYST)
    request = make_request(make_investigation("AWAY-1"))
    held = HeldSocket()
    page.route_web_socket(re.compile(r"/ws/approvals/"), held)
    signed_in(page, live_console, "ana-away")
    page.goto(f"{live_console.url}/approvals/{request.pk}/")
    card = page.locator(f"#action-{request.pk}")
    expect(card).to_have_attribute("data-state", "pending")

    approvals.reject(request.pk, analyst, "Not this one.")
    held.held = False
    expect(card).to_have_attribute("data-state", "rejected", timeout=RUN_TIMEOUT_MS)
    assert held.urls[-1].endswith(f"/ws/approvals/?request={request.pk}")


# Before the page's scripts: the investigation's own socket asks for a path the console does not
# serve, so it never opens, while every other socket (the approvals socket) connects as usual; and
# each state the live indicator takes is kept in window.__indicatorStates.
TRANSCRIPT_SOCKET_NEVER_OPENS = """
const RealWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  return new RealWebSocket(String(url).replace(/\\/ws\\/investigations\\/(\\d+)\\//, "/ws/no-such-socket/$1/"), protocols);
};
window.__indicatorStates = [];
new MutationObserver(function (changes) {
  changes.forEach((change) => {
    if (change.target.id === "live-indicator") window.__indicatorStates.push(change.target.dataset.state);
  });
}).observe(document, { subtree: true, attributeFilter: ["data-state"] });
"""


def test_the_live_indicator_reports_the_transcript_socket_not_the_approvals_socket(
    live_console, make_investigation, make_user, page
):
    """On an investigation's page "live" means its transcript is: an open approvals socket beside a
    transcript socket that cannot connect never makes the indicator say live."""
    make_user("ana-indicator", ANALYST)
    investigation = make_investigation("INDICATOR-1")
    signed_in(page, live_console, "ana-indicator")
    page.add_init_script(script=TRANSCRIPT_SOCKET_NEVER_OPENS)
    with page.expect_websocket(lambda ws: "/ws/approvals/" in ws.url) as approvals:
        page.goto(f"{live_console.url}/investigations/{investigation.pk}/")
    approvals.value.expect_event("framereceived")  # its snapshot: the approvals socket is open

    page.wait_for_function("() => window.__indicatorStates.includes('offline')")  # the transcript's failed
    states = page.evaluate("window.__indicatorStates")
    assert "live" not in states, states
