"""The estate and its stories, found the way an investigator would: through the API."""

from datetime import datetime, timedelta
from io import StringIO
from itertools import pairwise
from statistics import median

from django.core.management import call_command
from django.forms.models import model_to_dict

from toolserver.lab import estate as lab_estate
from toolserver.lab import faults
from toolserver.lab.models import (
    Account,
    Host,
    LabKey,
    LabWrite,
    Login,
    NetworkEvent,
    ProcessEvent,
    SiemEvent,
    Ticket,
)


def last_day(estate) -> str:
    return (estate.seeded_at() - timedelta(hours=24)).isoformat()


def test_the_estate_has_its_inventory(estate):
    assert Host.objects.count() == 36
    assert Account.objects.count() == 30
    assert set(Host.objects.filter(role="domain_controller").values_list("hostname", "criticality")) == {
        ("DC-01", "critical"),
        ("DC-02", "critical"),
    }
    assert Host.objects.filter(role="workstation", hostname__startswith="WS-").count() == 23
    assert Host.objects.get(hostname=estate.PHISHED_HOST).host_id == estate.PHISHED_HOST_ID
    first, last = Login.objects.order_by("at").first().at, Login.objects.order_by("at").last().at
    assert timedelta(days=6) < last - first <= timedelta(days=7)
    assert (
        ProcessEvent.objects.count() > 500 and NetworkEvent.objects.count() > 1000 and SiemEvent.objects.count() > 300
    )


def test_a_last_24_hours_search_finds_ordinary_activity(estate, lab):
    since = last_day(estate)
    assert lab.get("siem/logins", "siem", since=since, user="p.wright").json()["total"] > 0
    assert lab.get("edr/hosts/WS-ENG-01/processes", "edr", since=since).json()["total"] > 0


# Story 1: the phished user ------------------------------------------------------------
def test_phish_the_click_is_in_the_siem(estate, lab):
    clicks = lab.get(
        "siem/events", "siem", user=estate.PHISHED_USER, kind="email_click", since=last_day(estate)
    ).json()["items"]
    assert any(estate.PHISH_DOMAIN in click["summary"] and click["host"] == estate.PHISHED_HOST for click in clicks)


def test_phish_word_started_encoded_powershell_which_fetched_a_known_payload(estate, lab):
    items = lab.get(f"edr/hosts/{estate.PHISHED_HOST}/processes", "edr", since=last_day(estate), limit=500).json()[
        "items"
    ]
    by_pid = {item["pid"]: item for item in items}
    payload = next(item for item in items if item["sha256"] == estate.PAYLOAD_SHA256)
    shell = by_pid[payload["ppid"]]
    word = by_pid[shell["ppid"]]
    assert shell["image"].lower().endswith("powershell.exe") and " -enc " in shell["command_line"]
    assert word["image"].upper().endswith("WINWORD.EXE")
    connections = lab.get(
        f"edr/hosts/{estate.PHISHED_HOST}/connections", "edr", since=last_day(estate), limit=500
    ).json()["items"]
    assert any(c["pid"] == shell["pid"] and c["remote_domain"] == estate.PHISH_DOMAIN for c in connections)


def test_phish_intel_rates_payload_domain_and_attacker_malicious(estate, lab):
    for kind, value, tag in (
        ("hash", estate.PAYLOAD_SHA256, None),
        ("domain", estate.PHISH_DOMAIN, "phishing"),
        ("ip", estate.ATTACKER_IP, "tor-exit"),
    ):
        answer = lab.get("intel/lookup", "intel", kind=kind, value=value).json()
        assert answer["verdict"] == "malicious", value
        assert tag is None or tag in answer["tags"]


def test_phish_the_attacker_signed_in_as_the_user_after_failures(estate, lab):
    logins = lab.get("siem/logins", "siem", user=estate.PHISHED_USER, since=last_day(estate), limit=500).json()["items"]
    from_attacker = sorted(
        (item for item in logins if item["source_ip"] == estate.ATTACKER_IP), key=lambda item: item["at"]
    )
    results = [item["result"] for item in from_attacker]
    assert results[:4] == ["failure"] * 4 and "success" in results
    assert {item["source_country"] for item in from_attacker} == {estate.ATTACKER_COUNTRY}
    # Nobody else signs in from there.
    assert {
        item["user"]
        for item in lab.get("siem/logins", "siem", limit=500).json()["items"]
        if item["source_ip"] == estate.ATTACKER_IP
    } == {estate.PHISHED_USER}


# Story 2: the beaconing host ----------------------------------------------------------
def test_beacon_connects_about_every_minute_to_its_c2(estate, lab):
    body = lab.get(f"edr/hosts/{estate.BEACON_HOST}/connections", "edr", since=last_day(estate), limit=500).json()
    beacons = [c for c in body["items"] if c["remote_domain"] == estate.BEACON_DOMAIN]
    assert len(beacons) >= 400 and body["total"] > len(body["items"])  # the caller sees it was truncated
    assert {(c["remote_ip"], c["remote_port"]) for c in beacons} == {(estate.BEACON_IP, 443)}
    assert {c["image"].rsplit("\\", 1)[-1] for c in beacons} == {"svchost_update.exe"}
    moments = sorted(datetime.fromisoformat(c["at"]) for c in beacons)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(moments)]
    assert 55 <= median(gaps) <= 65 and max(gaps) <= 70


def test_beacon_binary_and_c2_are_cobaltstrike(estate, lab):
    processes = lab.get(f"edr/hosts/{estate.BEACON_HOST}/processes", "edr", since=last_day(estate), limit=500).json()[
        "items"
    ]
    assert any(p["sha256"] == estate.BEACON_SHA256 for p in processes)
    for kind, value in (("hash", estate.BEACON_SHA256), ("domain", estate.BEACON_DOMAIN), ("ip", estate.BEACON_IP)):
        answer = lab.get("intel/lookup", "intel", kind=kind, value=value).json()
        assert answer["verdict"] == "malicious" and "cobaltstrike" in answer["tags"], value


# Story 3: the benign traveller --------------------------------------------------------
def test_benign_traveller_signs_in_from_singapore_on_vpn_with_nothing_bad(estate, lab):
    logins = lab.get("siem/logins", "siem", user=estate.BENIGN_USER, since=last_day(estate), limit=500).json()["items"]
    abroad = [item for item in logins if item["source_country"] == estate.BENIGN_COUNTRY]
    assert abroad and all(item["result"] == "success" for item in abroad)
    assert any(item["method"] == "vpn" for item in abroad)
    vpn = lab.get("siem/events", "siem", user=estate.BENIGN_USER, kind="vpn_login").json()["items"]
    from_abroad = [event for event in vpn if estate.BENIGN_IP in event["summary"]]
    assert from_abroad and all("travel registered" in event["summary"] for event in from_abroad)
    all_logins = lab.get("siem/logins", "siem", user=estate.BENIGN_USER, limit=500).json()["items"]
    for ip in {item["source_ip"] for item in all_logins}:
        assert lab.get("intel/lookup", "intel", kind="ip", value=ip).json()["verdict"] in {"benign", "unknown"}
    assert lab.get("identity/users/" + estate.BENIGN_USER, "identity").json()["mfa"] is True


def test_benign_traveller_was_at_home_before_the_trip(estate, lab):
    before = (estate.seeded_at() - estate.BENIGN_FIRST_LOGIN_AGO - timedelta(minutes=1)).isoformat()
    logins = lab.get("siem/logins", "siem", user=estate.BENIGN_USER, until=before, limit=500).json()["items"]
    assert logins and {item["source_country"] for item in logins} == {"GB"}


# Demo alerts --------------------------------------------------------------------------
def test_demo_alerts_point_at_the_stories(estate):
    alerts = estate.demo_alerts()
    assert [alert["host"] for alert in alerts] == [estate.PHISHED_HOST, estate.BEACON_HOST, "SRV-VPN-01"]
    assert len({alert["external_id"] for alert in alerts}) == 3
    for alert in alerts:
        assert set(alert) == {"source", "external_id", "title", "severity", "host", "user", "observed_at", "details"}
        assert alert["source"] == "lab-siem" and alert["severity"] in {"low", "medium", "high", "critical"}
        observed = datetime.fromisoformat(alert["observed_at"])
        assert estate.seeded_at() - timedelta(days=3) < observed < estate.seeded_at()
        assert Host.objects.filter(hostname=alert["host"]).exists()
    first = alerts[0]
    assert first["user"] == estate.PHISHED_USER
    assert SiemEvent.objects.filter(
        kind="process_start", hostname=estate.PHISHED_HOST, at=datetime.fromisoformat(first["observed_at"])
    ).exists()


# Seeding ------------------------------------------------------------------------------
def _snapshot():
    def rows(model, *exclude):
        return sorted(str(model_to_dict(row, exclude=["id", *exclude])) for row in model.objects.all())

    return {
        model.__name__: rows(model, "host") for model in (Host, Account, Login, SiemEvent, ProcessEvent, NetworkEvent)
    }


def test_seeding_is_deterministic(db):
    moment = datetime.fromisoformat("2025-03-01T12:00:00+00:00")
    lab_estate.seed(now=moment)
    first = _snapshot()
    lab_estate.seed(now=moment)
    assert _snapshot() == first


def test_seeding_follows_the_clock(db):
    lab_estate.seed(now=datetime.fromisoformat("2025-03-01T12:00:00+00:00"))
    earlier = Login.objects.order_by("-at").first().at
    lab_estate.seed(now=datetime.fromisoformat("2025-03-02T12:00:00+00:00"))
    assert Login.objects.order_by("-at").first().at - earlier == timedelta(days=1)


def test_seed_lab_rebuilds_the_estate_but_keeps_keys(estate, lab):
    lab.post(
        f"edr/hosts/{estate.PHISHED_HOST}/isolate",
        "edr-response",
        {"reason": "Encoded PowerShell from Word, known-bad payload."},
    )
    lab.post("tickets", "ticketing", {"title": "Phish", "body": "Details", "severity": "high"})
    faults.inject("siem", "error_5xx")
    keys_before = list(LabKey.objects.values_list("key_hash", flat=True))

    call_command("seed_lab", stdout=StringIO())
    assert list(LabKey.objects.values_list("key_hash", flat=True)) == keys_before
    assert lab.get("health", "siem").status_code == 200
    assert Host.objects.get(hostname=estate.PHISHED_HOST).isolated is False
    assert not Ticket.objects.exists() and not LabWrite.objects.exists()
    assert faults.current()["siem"].mode == "none"
    assert Host.objects.count() == 36
