from datetime import datetime, timedelta

import pytest

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."


@pytest.mark.parametrize("ref", ["H-1042", "WS-FIN-07", "ws-fin-07"])
def test_a_host_by_id_or_hostname(estate, lab, ref):
    response = lab.get(f"edr/hosts/{ref}", "edr")
    assert response.status_code == 200
    assert response.json() == {
        "host_id": "H-1042",
        "hostname": "WS-FIN-07",
        "os": "Windows 11 Enterprise 23H2",
        "role": "workstation",
        "owner": "j.doe",
        "ip": response.json()["ip"],
        "criticality": "medium",
        "isolated": False,
        "last_seen": response.json()["last_seen"],
    }


def test_the_domain_controllers_are_critical(estate, lab):
    for name in (estate.DOMAIN_CONTROLLER, "DC-02"):
        host = lab.get(f"edr/hosts/{name}", "edr").json()
        assert (host["role"], host["criticality"]) == ("domain_controller", "critical")


@pytest.mark.parametrize("path", ["edr/hosts/NOPE-1", "edr/hosts/NOPE-1/processes", "edr/hosts/NOPE-1/connections"])
def test_an_unknown_host_is_404_naming_it(estate, lab, path):
    response = lab.get(path, "edr")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "target": "NOPE-1"}


def test_processes_newest_first_with_total_and_since(estate, lab):
    body = lab.get("edr/hosts/WS-FIN-07/processes", "edr", limit=2).json()
    assert len(body["items"]) == 2 and body["total"] > 2
    for item in body["items"]:
        assert set(item) == {"at", "pid", "ppid", "image", "command_line", "user", "sha256"}
    assert body["items"][0]["at"] >= body["items"][1]["at"]
    since = estate.seeded_at() - timedelta(hours=6)
    recent = lab.get("edr/hosts/WS-FIN-07/processes", "edr", since=since.isoformat(), limit=500).json()
    assert 0 < recent["total"] < body["total"]
    assert all(datetime.fromisoformat(item["at"]) >= since for item in recent["items"])


def test_connections_shape(estate, lab):
    body = lab.get("edr/hosts/SRV-APP-03/connections", "edr", limit=5).json()
    assert len(body["items"]) == 5
    for item in body["items"]:
        assert set(item) == {"at", "pid", "image", "remote_ip", "remote_domain", "remote_port", "bytes_out"}


@pytest.mark.parametrize(
    "query", [{"since": "last week"}, {"limit": "0"}, {"limit": "1000"}, {"until": "2025-01-01T00:00:00Z"}]
)
def test_bad_activity_queries_are_400(estate, lab, query):
    for path in ("edr/hosts/WS-FIN-07/processes", "edr/hosts/WS-FIN-07/connections"):
        response = lab.get(path, "edr", **query)
        assert response.status_code == 400 and response.json()["error"] == "bad_request"


def test_isolate_then_release(estate, lab):
    isolated = lab.post("edr/hosts/WS-FIN-07/isolate", "edr-response", {"reason": REASON})
    assert isolated.status_code == 200
    body = isolated.json()
    assert body["host_id"] == "H-1042" and body["isolated"] is True and body["already_isolated"] is False
    assert body["action_id"].startswith("ISO-")
    assert lab.get("edr/hosts/H-1042", "edr").json()["isolated"] is True

    again = lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}).json()
    assert again["already_isolated"] is True and again["isolated"] is True and again["action_id"] != body["action_id"]

    released = lab.post("edr/hosts/H-1042/release", "edr-response", {"reason": REASON}).json()
    assert (
        released["isolated"] is False
        and released["already_released"] is False
        and released["action_id"].startswith("REL-")
    )
    assert lab.post("edr/hosts/H-1042/release", "edr-response", {"reason": REASON}).json()["already_released"] is True
    assert lab.get("edr/hosts/H-1042", "edr").json()["isolated"] is False


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": 42}, {"reason": REASON, "force": True}, ["reason"]])
def test_isolate_with_a_bad_body_is_400(estate, lab, body):
    response = lab.post("edr/hosts/WS-FIN-07/isolate", "edr-response", body)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert lab.get("edr/hosts/WS-FIN-07", "edr").json()["isolated"] is False


def test_isolate_with_broken_json_is_400(estate, lab):
    response = lab.post("edr/hosts/WS-FIN-07/isolate", "edr-response", raw=b'{"reason": ')
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


def test_isolating_an_unknown_host_is_404(estate, lab):
    response = lab.post("edr/hosts/WS-NOPE-99/isolate", "edr-response", {"reason": REASON})
    assert response.status_code == 404 and response.json() == {"error": "not_found", "target": "WS-NOPE-99"}
