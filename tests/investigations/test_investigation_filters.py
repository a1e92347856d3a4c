"""The investigations list's filters and search, on the page and `GET /api/investigations`: one form,
one queryset function, on top of who may see what."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from investigations.models import Alert, Investigation
from investigations.runs import selectors

pytestmark = pytest.mark.django_db

XSS = "<script>alert('owned')</script>"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def make(
    external_id: str, *, created: datetime = T0, status: str = "queued", verdict: str = "", **alert
) -> Investigation:
    fields = {
        "source": "lab-siem",
        "title": f"Alert {external_id}",
        "severity": "medium",
        "host": "",
        "account": "",
        "observed_at": created - timedelta(minutes=5),
    } | alert
    investigation = Investigation.objects.create(
        alert=Alert.objects.create(external_id=external_id, **fields),
        status=status,
        verdict=verdict,
        model="gatehouse-offline-1",
        budget_tool_calls=10,
        budget_tokens=10_000,
        budget_seconds=60,
    )
    Investigation.objects.filter(pk=investigation.pk).update(created_at=created)  # auto_now_add: set after
    return investigation


@pytest.fixture
def estate(db) -> dict[str, Investigation]:
    """Five investigations created an hour apart, oldest first."""
    return {
        "phish": make(
            "EXT-PHISH-1",
            title="Phishing mail opened",
            severity="low",
            host="MAIL-01",
            account="j.doe",
            source="splunk",
            created=T0,
        ),
        "beacon": make(
            "EXT-BEACON-2",
            title="Beacon to rare domain",
            severity="high",
            host="WS-FIN-07",
            account="a.lee",
            created=T0 + timedelta(hours=1),
            status="completed",
            verdict="malicious",
        ),
        "powershell": make(
            "EXT-PS-3",
            title="Encoded PowerShell",
            severity="critical",
            host="WS-FIN-07",
            account="j.doe",
            created=T0 + timedelta(hours=2),
            status="completed",
            verdict="benign",
        ),
        "login": make(
            "EXT-LOGIN-4",
            title="Impossible travel",
            severity="medium",
            host="VPN-GW",
            account="b.kim",
            source="wazuh",
            created=T0 + timedelta(hours=3),
            status="running",
        ),
        # Observed long before it was investigated: the two time filters differ on it.
        "late": make(
            "EXT-LATE-5",
            title="Late delivery",
            severity="medium",
            host="DB-02",
            account="svc.backup",
            created=T0 + timedelta(hours=4),
            observed_at=T0 - timedelta(days=2),
            status="failed",
        ),
    }


def listed_ids(response) -> list[int]:
    return [int(value) for value in re.findall(r'<tr data-investigation-id="(\d+)"', response.content.decode())]


def page_of(client, **query):
    return client.get(reverse("investigations:list"), query)


def api_ids(client, **query) -> list[int]:
    response = client.get("/api/investigations", query)
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["items"]]


def ids(estate, *names) -> list[int]:
    """The named investigations' ids, newest first, as the list orders them."""
    return sorted((estate[name].pk for name in names), reverse=True)


NARROWING = [
    ({"status": "completed"}, ["beacon", "powershell"]),
    ({"status": "running"}, ["login"]),
    ({"verdict": "malicious"}, ["beacon"]),
    ({"severity": "critical"}, ["powershell"]),
    ({"severity": "medium"}, ["login", "late"]),
    ({"host": "ws-fin-07"}, ["beacon", "powershell"]),  # any case
    ({"host": "WS-FIN"}, []),  # the host filter is the whole name; search finds parts
    ({"user": "J.DOE"}, ["phish", "powershell"]),
    ({"source": "wazuh"}, ["login"]),
    ({"q": "powershell"}, ["powershell"]),  # the title
    ({"q": "vpn-"}, ["login"]),  # part of the host
    ({"q": "svc.back"}, ["late"]),  # part of the user
    ({"q": "ext-phish"}, ["phish"]),  # part of the external id
    ({"since": "2026-11-25T11:00"}, ["powershell", "login", "late"]),  # created, by default
    ({"until": "2026-11-25T10:00"}, ["phish", "beacon"]),
    ({"since": "2026-11-25T10:30", "until": "2026-11-25T12:30"}, ["powershell", "login"]),
    ({"since": "2026-11-25T11:00:00+02:00"}, ["phish", "beacon", "powershell", "login", "late"]),  # 09:00 UTC
    ({"time": "observed", "until": "2026-11-24T00:00"}, ["late"]),
    ({"time": "observed", "since": "2026-11-25T10:00"}, ["powershell", "login"]),  # observed 5 minutes before
]


@pytest.mark.parametrize("query, expected", NARROWING)
def test_each_filter_narrows_the_page_and_the_api_alike(client, analyst, estate, query, expected):
    client.force_login(analyst)
    response = page_of(client, **query)
    assert response.status_code == 200
    assert listed_ids(response) == ids(estate, *expected)
    assert api_ids(client, **query) == ids(estate, *expected)


def test_no_filter_lists_everything_and_a_blank_filter_is_no_filter(client, analyst, estate):
    client.force_login(analyst)
    everything = ids(estate, *estate)
    assert listed_ids(page_of(client)) == everything
    blank = {"q": "", "status": "", "verdict": "", "host": "", "since": "", "time": ""}
    assert listed_ids(page_of(client, **blank)) == everything
    assert api_ids(client, **blank) == everything


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"host": "WS-FIN-07", "verdict": "benign"}, ["powershell"]),
        ({"user": "j.doe", "severity": "low", "source": "splunk"}, ["phish"]),
        ({"q": "e", "status": "completed", "since": "2026-11-25T10:30"}, ["powershell"]),
        ({"user": "j.doe", "status": "running"}, []),
    ],
)
def test_filters_combine(client, analyst, estate, query, expected):
    client.force_login(analyst)
    assert listed_ids(page_of(client, **query)) == ids(estate, *expected)
    assert api_ids(client, **query) == ids(estate, *expected)


def test_a_user_never_finds_an_investigation_they_cannot_see(client, make_user, estate):
    nobody = make_user("nobody")
    assign_perm("investigations.view_investigation", nobody, estate["beacon"])
    client.force_login(nobody)
    for query in ({"q": "ext-ps-3"}, {"q": "powershell"}, {"host": "WS-FIN-07"}, {"verdict": "benign"}, {}):
        response = page_of(client, **query)
        assert estate["powershell"].pk not in listed_ids(response), query
        assert "EXT-PS-3" not in response.content.decode(), query
        assert estate["powershell"].pk not in api_ids(client, **query), query
    assert listed_ids(page_of(client, host="WS-FIN-07")) == [estate["beacon"].pk]
    assert client.get("/api/investigations", {"q": "ps"}).json()["count"] == 0


@pytest.mark.parametrize(
    "query, field, message",
    [
        ({"status": "sleeping"}, "status", "Select a valid choice"),
        ({"verdict": "guilty"}, "verdict", "Select a valid choice"),
        ({"severity": "HIGH"}, "severity", "Select a valid choice"),
        ({"time": "received"}, "time", "Select a valid choice"),
        ({"since": "yesterday"}, "since", "Enter a valid date/time"),
        ({"until": "2026-13-01T00:00"}, "until", "Enter a valid date/time"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since", "between 1970 and 2999"),
        ({"since": "2026-11-25T10:00", "until": "2026-11-25T09:00"}, "until", "Must not be before From"),
        ({"q": "x" * 101}, "q", "at most 100 characters"),
        ({"host": "WS\x00FIN"}, "host", "Null characters are not allowed"),
    ],
)
def test_an_invalid_filter_is_a_clear_error_naming_its_field(client, analyst, estate, query, field, message):
    client.force_login(analyst)
    response = page_of(client, **query)
    assert response.status_code == 400
    errors = re.findall(r'<li class="error" data-field="(\w+)">([^<]*)</li>', response.content.decode())
    assert [name for name, _ in errors] == [field]
    assert message in errors[0][1]
    assert listed_ids(response) == []  # no list it could not filter

    response = client.get("/api/investigations", query)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid filter."
    assert [error["field"] for error in body["errors"]] == [field]
    assert message in body["errors"][0]["message"]


def test_a_filter_given_twice_is_refused_by_the_api(client, analyst, estate):
    client.force_login(analyst)
    response = client.get("/api/investigations?status=queued&status=completed")
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["status"]


def test_pages_keep_their_filters(client, analyst, estate):
    matching = [make(f"STORM-{n}", host="WEB-01", created=T0 + timedelta(days=1, seconds=n)) for n in range(53)]
    client.force_login(analyst)
    first = page_of(client, host="web-01")
    assert listed_ids(first) == [investigation.pk for investigation in matching[::-1][:50]]
    older = re.search(r'<a href="\?([^"]*)" rel="next">Older</a>', first.content.decode()).group(1)
    assert older == "host=web-01&amp;page=2"
    second = page_of(client, host="web-01", page=2)
    assert listed_ids(second) == [investigation.pk for investigation in matching[2::-1]]
    assert 'href="?host=web-01&amp;page=1" rel="prev"' in second.content.decode()
    assert 'value="web-01"' in second.content.decode()  # the form shows the filter it applied

    api = client.get("/api/investigations", {"host": "web-01"}).json()
    assert (api["count"], api["next_page"], len(api["items"])) == (53, 2, 50)
    api = client.get("/api/investigations", {"host": "web-01", "page": 2}).json()
    assert ([item["id"] for item in api["items"]], api["next_page"]) == ([i.pk for i in matching[2::-1]], None)
    assert client.get("/api/investigations", {"host": "web-01", "page": 3}).json()["items"] == []


def test_alert_text_and_the_search_itself_are_shown_escaped(client, analyst, db):
    make("XSS-1", title=f"Phish {XSS}", host="WS-1")
    client.force_login(analyst)
    page = page_of(client, q="phish <script>").content.decode()
    assert XSS not in page and "<script>alert" not in page
    assert "Phish &lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page
    assert 'value="phish &lt;script&gt;"' in page
    invalid = page_of(client, q=XSS, status=XSS).content.decode()
    assert XSS not in invalid and "<script>alert" not in invalid


def queries_for(client, url: str, **query) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, query)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", [reverse("investigations:list"), "/api/investigations"])
def test_the_filtered_list_reads_a_fixed_number_of_queries_however_many_rows(client, make_user, db, url):
    # A user without a role: the visibility rule's subquery is in play too.
    nobody = make_user("nobody")
    client.force_login(nobody)
    few = [make(f"FEW-{n}", host="WEB-01") for n in range(2)]
    for investigation in few:
        assign_perm("investigations.view_investigation", nobody, investigation)
    counted = queries_for(client, url, host="WEB-01", q="alert")
    many = [make(f"MANY-{n}", host="WEB-01") for n in range(12)]
    for investigation in many:
        assign_perm("investigations.view_investigation", nobody, investigation)
    assert queries_for(client, url, host="WEB-01", q="alert") == counted


def test_the_api_schema_documents_the_filters(client):
    operation = client.get("/api/openapi.json").json()["paths"]["/api/investigations"]["get"]
    parameters = {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}
    assert set(parameters) >= {"page", "q", "status", "verdict", "severity", "host", "user", "source", "time"}
    assert parameters["status"]["enum"] == ["", "queued", "running", "waiting", "completed", "failed"]
    assert parameters["q"]["maxLength"] == 100


def test_the_list_groups_nothing_its_related_counts_are_of_the_pages_rows_only(analyst):
    """A join and GROUP BY for the related-alerts count made every page and its count group every visible
    investigation first (30 times slower at 30,000); the count is a subquery per row of the page."""
    from django.core.paginator import Paginator

    listed = selectors.listing(analyst)
    assert not listed.query.group_by
    with CaptureQueriesContext(connection) as captured:
        assert Paginator(listed, 50).count == Investigation.objects.count()
    assert "GROUP BY" not in captured.captured_queries[-1]["sql"].upper()


@pytest.mark.production
def test_the_host_and_user_filters_can_use_their_indexes(db):
    with connection.cursor() as cursor:  # a test's tables are too small for the planner to bother otherwise
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = selectors.filtered(Investigation.objects.all(), {"host": "ws-1", "user": "j.doe"}).explain()
    assert "alert_host_upper" in plan or "alert_account_upper" in plan, plan
