"""The investigation pages and the alert form, through the Django test client."""

import html
import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from console.navigation import items_for
from core.roles import ADMIN, ANALYST, MANAGER
from investigations.intake.services import AlertIn, receive_alert
from investigations.models import Alert, Event, Investigation
from tests.investigations.test_websocket import hiding_request, record_action

pytestmark = pytest.mark.django_db

XSS = "<script>alert('owned')</script>"


@pytest.fixture(autouse=True)
def offline(settings):
    settings.ANTHROPIC_API_KEY = ""  # investigations started here run on the offline model


def raise_alert(external_id: str, **fields) -> Investigation:
    alert = {
        "source": "lab-siem",
        "external_id": external_id,
        "title": f"Encoded PowerShell on WS-FIN-07 ({external_id})",
        "severity": "high",
        "host": "WS-FIN-07",
        "user": "j.doe",
        "observed_at": timezone.now() - timedelta(minutes=10),
        "details": {"rule": "Office child process"},
    }
    return receive_alert(AlertIn(**(alert | fields))).investigation


def listed_ids(response) -> list[int]:
    return [int(value) for value in re.findall(r'<tr data-investigation-id="(\d+)"', response.content.decode())]


def embedded_events(response) -> list[dict]:
    match = re.search(
        r'<script id="investigation-events" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert match, "the page embeds its saved events"
    return json.loads(match.group(1))


# -- the list ---------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [ANALYST, MANAGER])
def test_the_list_shows_analysts_and_managers_every_investigation_newest_first(client, make_user, role):
    first, second = raise_alert("A-1"), raise_alert("A-2")
    client.force_login(make_user("someone", role))
    response = client.get(reverse("investigations:list"))
    assert response.status_code == 200
    assert listed_ids(response) == [second.pk, first.pk]
    page = response.content.decode()
    assert "lab-siem:A-1" in page and "Encoded PowerShell on WS-FIN-07 (A-2)" in page
    assert 'data-status="queued"' in page


def test_a_user_without_a_role_sees_only_the_investigations_granted_to_them(client, make_user):
    shown, hidden = raise_alert("A-1"), raise_alert("A-2")
    nobody = make_user("nobody")
    client.force_login(nobody)
    assert listed_ids(client.get(reverse("investigations:list"))) == []

    assign_perm("investigations.view_investigation", nobody, shown)
    response = client.get(reverse("investigations:list"))
    assert listed_ids(response) == [shown.pk]
    assert "A-2" not in response.content.decode()
    assert hidden.pk not in listed_ids(response)


def test_the_list_is_paginated_by_fifty(client, analyst):
    investigations = [raise_alert(f"A-{n}") for n in range(51)]
    client.force_login(analyst)
    first = listed_ids(client.get(reverse("investigations:list")))
    second = listed_ids(client.get(reverse("investigations:list"), {"page": 2}))
    assert len(first) == 50 and second == [investigations[0].pk]
    assert first[0] == investigations[-1].pk


def test_the_list_names_the_model(client, analyst):
    raise_alert("A-1")
    client.force_login(analyst)
    assert '<td class="model-name">offline model</td>' in client.get(reverse("investigations:list")).content.decode()


def test_the_pages_need_a_signed_in_user(client):
    investigation = raise_alert("A-1")
    for url in (
        reverse("investigations:list"),
        reverse("investigations:detail", args=[investigation.pk]),
        reverse("investigations:new_alert"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url


# -- one investigation ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [ANALYST, MANAGER])
def test_analysts_and_managers_open_an_investigation(client, make_user, role):
    investigation = raise_alert("A-1")
    client.force_login(make_user("someone", role))
    response = client.get(reverse("investigations:detail", args=[investigation.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "lab-siem:A-1" in page and "WS-FIN-07" in page and "j.doe" in page
    assert 'id="status" class="status" data-status="queued"' in page
    assert f"0 of {investigation.budget_tool_calls}" in page


def test_a_user_without_a_role_finds_no_investigation_until_it_is_granted(client, make_user):
    investigation = raise_alert("A-1")
    nobody = make_user("nobody")
    client.force_login(nobody)
    url = reverse("investigations:detail", args=[investigation.pk])
    unknown = reverse("investigations:detail", args=[investigation.pk + 1000])
    assert client.get(url).status_code == 404 == client.get(unknown).status_code  # hidden is as unknown: no oracle

    assign_perm("investigations.view_investigation", nobody, investigation)
    assert client.get(url).status_code == 200


def test_a_missing_investigation_is_404(client, analyst):
    client.force_login(analyst)
    assert client.get(reverse("investigations:detail", args=[999999])).status_code == 404


def test_the_investigation_page_names_the_offline_model(client, analyst):
    investigation = raise_alert("A-1")
    client.force_login(analyst)
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    assert 'Model: <strong class="model-name">offline model</strong>' in page


def test_the_page_embeds_the_saved_events_for_its_script(client, analyst):
    investigation = raise_alert("A-1")
    Event.objects.create(
        investigation=investigation, seq=2, kind="text", data={"text": "I'll check </script> first", "block": "1.0"}
    )
    client.force_login(analyst)
    response = client.get(reverse("investigations:detail", args=[investigation.pk]))
    saved = [event.as_message() for event in investigation.events.all()]
    assert [event["kind"] for event in saved] == ["status", "text"]
    assert embedded_events(response) == json.loads(json.dumps(saved))
    assert "I'll check </script>" not in response.content.decode()  # cannot end the script element early


def test_the_transcripts_action_line_is_embedded_as_the_card_beside_it_shows_it(client, analyst):
    """The script draws the saved events as given: an action's target and outcome are embedded as the
    server-rendered decision card shows them, a right-to-left override and a line separator as escapes."""
    investigation = raise_alert("A-1")
    record_action(hiding_request(investigation))
    client.force_login(analyst)
    response = client.get(reverse("investigations:detail", args=[investigation.pk]))
    page = response.content.decode()
    (action,) = [event["data"] for event in embedded_events(response) if event["kind"] == "action"]
    card_target = re.search(r'<code class="decision-target">(.*?)</code>', page, re.S).group(1)
    card_outcome = re.search(r'<p class="decision-outcome">(.*?)</p>', page, re.S).group(1)
    assert action["target"] == html.unescape(card_target) == "host=WS-FIN-07\\u202e\\u200bexe.gpj"
    assert action["outcome"] == html.unescape(card_outcome) == "WS-FIN-07\\u202e isolated\\u2028forged line"
    assert not {"\u202e", "\u200b", "\u2028"} & set(page)


def test_a_finished_investigation_shows_its_verdict_card(client, analyst):
    investigation = raise_alert("A-1")
    Investigation.objects.filter(pk=investigation.pk).update(
        status="completed",
        verdict="malicious",
        summary="Confirmed by intel.",
        evidence=["toolu_1: domain is malicious"],
    )
    client.force_login(analyst)
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    assert 'id="verdict" class="card verdict" data-verdict="malicious"' in page
    assert "Confirmed by intel." in page and "<li>toolu_1: domain is malicious</li>" in page


def test_the_verdict_card_shows_hidden_characters_as_escapes_as_its_event_does(client, analyst):
    """The card the page renders before its script draws the verdict event reads as that event: what
    reorders or hides text in the model's summary, evidence or end reason as its escapes (core.text)."""
    investigation = raise_alert("A-1")
    spoofed = "ws-fin-07\u202e\u200bexe.gpj"
    Investigation.objects.filter(pk=investigation.pk).update(
        status="completed", verdict="malicious", summary=f"Ran {spoofed}", evidence=[spoofed], end_reason=spoofed
    )
    client.force_login(analyst)
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    shown = "ws-fin-07\\u202e\\u200bexe.gpj"
    assert f'<p class="verdict-summary">Ran {shown}</p>' in page and f"<li>{shown}</li>" in page
    assert f'<span class="end-reason-text">{shown}</span>' in page
    assert not {"\u202e", "\u200b"} & set(page)


def test_alert_text_is_shown_escaped(client, analyst):
    investigation = raise_alert("A-1", title=f"Phish {XSS}", details={"subject": XSS, "nested": {"html": "<b>x</b>"}})
    client.force_login(analyst)
    for url in (reverse("investigations:detail", args=[investigation.pk]), reverse("investigations:list")):
        page = client.get(url).content.decode()
        assert XSS not in page and "<b>x</b>" not in page, url
        assert "Phish &lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page, url
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    assert "&quot;subject&quot;: &quot;&lt;script&gt;" in page  # the details, as pretty JSON


def test_an_alerts_title_and_details_show_hidden_characters_as_escapes(client, analyst):
    """The sender's text (a phishing subject in a title, a file name in the details) reads on the
    investigation and its list as on the decision card and the audit pages: what reorders or hides text
    as its escapes (core.text)."""
    spoofed, shown = "ws-fin-07\u202e\u200bexe.gpj", "ws-fin-07\\u202e\\u200bexe.gpj"
    investigation = raise_alert("A-1", title=f"Ran {spoofed}", details={"file": spoofed})
    client.force_login(analyst)
    for url in (reverse("investigations:detail", args=[investigation.pk]), reverse("investigations:list")):
        page = client.get(url).content.decode()
        assert f"Ran {shown}" in page and not {"\u202e", "\u200b"} & set(page), url
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    assert f"<h1>Ran {shown}</h1>" in page and f"&quot;file&quot;: &quot;{shown}&quot;" in page


# -- the alert form ---------------------------------------------------------------------------------
def form_data(**overrides) -> dict:
    observed = timezone.localtime() - timedelta(minutes=5)
    return {
        "title": "Suspicious PowerShell on WS-FIN-07",
        "severity": "high",
        "host": "WS-FIN-07",
        "user": "j.doe",
        "observed_at": observed.strftime("%Y-%m-%dT%H:%M:%S"),
        "details": '{"rule": "Office child process", "pid": 8572}',
    } | overrides


def test_an_analyst_raises_an_alert_and_is_taken_to_its_investigation(client, analyst):
    client.force_login(analyst)
    form = client.get(reverse("investigations:new_alert"))
    assert form.status_code == 200
    assert 'name="observed_at"' in form.content.decode() and form.context["form"]["observed_at"].value()

    response = client.post(reverse("investigations:new_alert"), form_data())
    alert = Alert.objects.get()
    investigation = alert.investigations.get()
    assert response.status_code == 302
    assert response.url == reverse("investigations:detail", args=[investigation.pk])
    assert alert.source == "console" and re.fullmatch(r"console-[0-9a-f]{32}", alert.external_id)
    assert (alert.title, alert.severity, alert.host, alert.account) == (
        "Suspicious PowerShell on WS-FIN-07",
        "high",
        "WS-FIN-07",
        "j.doe",
    )
    assert alert.details == {"rule": "Office child process", "pid": 8572}
    assert alert.submitted_by == analyst and investigation.requested_by == analyst
    assert investigation.status == "queued"


def test_two_alerts_from_the_form_are_two_investigations(client, analyst):
    client.force_login(analyst)
    client.post(reverse("investigations:new_alert"), form_data(details=""))
    client.post(reverse("investigations:new_alert"), form_data(details=""))
    assert Investigation.objects.count() == 2
    assert list(Alert.objects.values_list("details", flat=True)) == [{}, {}]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("details", '{"rule": "unterminated', "Not valid JSON"),
        ("details", "[1, 2, 3]", "Must be a JSON object"),
        ("host", "WS FIN 07; rm -rf /", "A host name"),
        ("user", "<b>j.doe</b>", "A user name"),
        ("title", "x" * 301, "at most 300 characters"),
        ("observed_at", "2999-01-01T00:00", "must not be in the future"),
        ("observed_at", "yesterday", "Enter a valid date/time"),
        ("severity", "apocalyptic", "Select a valid choice"),
    ],
)
def test_invalid_input_is_shown_again_with_the_field_errors(client, analyst, field, value, message):
    client.force_login(analyst)
    response = client.post(reverse("investigations:new_alert"), form_data(**{field: value}))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field]
    assert any(message.lower() in error.lower() for error in errors[field]), errors
    assert 'class="errorlist' in response.content.decode()
    assert not Alert.objects.exists() and not Investigation.objects.exists()


def test_details_larger_than_the_alert_limit_are_refused(client, analyst, settings):
    client.force_login(analyst)
    padding = "x" * settings.ALERT_MAX_BYTES
    response = client.post(reverse("investigations:new_alert"), form_data(details=json.dumps({"padding": padding})))
    assert "Too large" in response.context["form"].errors["details"][0]
    assert not Alert.objects.exists()


def test_every_problem_is_shown_at_once(client, analyst):
    client.force_login(analyst)
    response = client.post(reverse("investigations:new_alert"), form_data(details="{oops", host="bad host", title=""))
    assert sorted(response.context["form"].errors) == ["details", "host", "title"]
    assert not Alert.objects.exists()


def test_managers_and_users_without_a_role_cannot_raise_alerts(client, manager, make_user):
    for user in (manager, make_user("nobody")):
        client.force_login(user)
        assert client.get(reverse("investigations:new_alert")).status_code == 403
        assert client.post(reverse("investigations:new_alert"), form_data()).status_code == 403
    assert not Alert.objects.exists()


# -- navigation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "role, shown, not_shown",
    [
        (ANALYST, ["Investigations", "New alert"], []),
        (MANAGER, ["Investigations"], ["New alert"]),
        (ADMIN, [], ["Investigations", "New alert"]),
    ],
)
def test_the_navigation_leads_each_role_to_its_pages(client, make_user, role, shown, not_shown):
    user = make_user("someone", role, is_staff=role == ADMIN)
    labels = [item["label"] for item in items_for(user)]
    assert all(label in labels for label in shown) and not any(label in labels for label in not_shown)
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    for label in shown:
        assert f">{label}</a>" in page
