from datetime import UTC, datetime, timedelta

import pytest


def ts(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


def test_logins_have_the_documented_shape_newest_first(estate, lab):
    body = lab.get("siem/logins", "siem", user="j.doe").json()
    assert set(body) == {"items", "total"}
    assert body["items"], "j.doe has logins"
    for item in body["items"]:
        assert set(item) == {"at", "user", "host", "source_ip", "source_country", "result", "method"}
        assert item["result"] in {"success", "failure"} and item["user"] == "j.doe"
        assert item["at"].endswith("Z")
    moments = [parse(item["at"]) for item in body["items"]]
    assert moments == sorted(moments, reverse=True)


def test_logins_limit_defaults_to_50_and_total_counts_before_the_limit(estate, lab):
    everything = lab.get("siem/logins", "siem", limit=500).json()
    assert everything["total"] > 50
    default = lab.get("siem/logins", "siem").json()
    assert len(default["items"]) == 50 and default["total"] == everything["total"]
    three = lab.get("siem/logins", "siem", limit=3).json()
    assert three["items"] == everything["items"][:3] and three["total"] == everything["total"]


def test_logins_filter_by_host_name_or_id_and_window(estate, lab):
    by_name = lab.get("siem/logins", "siem", host="SRV-SSO-01", limit=500).json()
    assert by_name["total"] and {item["host"] for item in by_name["items"]} == {"SRV-SSO-01"}
    assert lab.get("siem/logins", "siem", host="H-1012", limit=500).json() == by_name
    now = estate.seeded_at()
    since, until = now - timedelta(hours=6), now - timedelta(hours=2)
    window = lab.get("siem/logins", "siem", since=ts(since), until=ts(until), limit=500).json()
    assert window["total"] > 0
    assert all(since <= parse(item["at"]) <= until for item in window["items"])


def test_timestamps_with_offsets_and_fractions_are_accepted(estate, lab):
    since = (estate.seeded_at() - timedelta(hours=24)).isoformat(timespec="microseconds")  # +00:00
    assert lab.get("siem/logins", "siem", since=since).status_code == 200
    plus_two = (estate.seeded_at() - timedelta(hours=1)).astimezone(tz=None).isoformat()
    assert lab.get("siem/logins", "siem", since=plus_two).status_code == 200


@pytest.mark.parametrize(
    "query, detail",
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-40T00:00:00Z"}, "until"),
        ({"since": "2025-02-02T00:00:00Z", "until": "2025-02-01T00:00:00Z"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"usr": "j.doe"}, "usr"),
    ],
)
def test_bad_login_queries_are_400(estate, lab, query, detail):
    response = lab.get("siem/logins", "siem", **query)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request" and detail in body["detail"]


def test_events_have_the_documented_shape_and_filter_by_kind(estate, lab):
    body = lab.get("siem/events", "siem", host="WS-FIN-07", limit=500).json()
    assert body["total"] == len(body["items"]) > 0
    for item in body["items"]:
        assert set(item) == {"at", "kind", "host", "user", "summary"} and item["host"] == "WS-FIN-07"
    clicks = lab.get("siem/events", "siem", user="j.doe", kind="email_click", limit=500).json()
    assert clicks["items"] and {item["kind"] for item in clicks["items"]} == {"email_click"}


def test_events_without_a_host_say_null(estate, lab):
    pushes = lab.get("siem/events", "siem", kind="mfa_push", limit=5).json()["items"]
    assert pushes and all(item["host"] is None for item in pushes)


def test_an_unknown_event_kind_is_400(estate, lab):
    response = lab.get("siem/events", "siem", kind="coffee_break")
    assert response.status_code == 400 and "kind" in response.json()["detail"]


def test_events_window(estate, lab):
    now = estate.seeded_at()
    recent = lab.get("siem/events", "siem", since=ts(now - timedelta(hours=1)), limit=500).json()
    assert all(parse(item["at"]) >= now - timedelta(hours=1) for item in recent["items"])
    long_ago = lab.get(
        "siem/events", "siem", since=ts(datetime(2000, 1, 1, tzinfo=UTC)), until=ts(datetime(2000, 1, 2, tzinfo=UTC))
    )
    assert long_ago.json() == {"items": [], "total": 0}
