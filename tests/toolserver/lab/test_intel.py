import pytest


def test_a_known_indicator(estate, lab):
    response = lab.get("intel/lookup", "intel", kind="hash", value=estate.PAYLOAD_SHA256)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"kind", "value", "verdict", "confidence", "tags", "first_seen", "source"}
    assert body["verdict"] == "malicious" and 0 <= body["confidence"] <= 100 and body["value"] == estate.PAYLOAD_SHA256


def test_an_unknown_indicator_is_unknown_not_404(estate, lab):
    response = lab.get("intel/lookup", "intel", kind="domain", value="never-heard-of.example")
    assert response.status_code == 200
    assert response.json() == {
        "kind": "domain",
        "value": "never-heard-of.example",
        "verdict": "unknown",
        "confidence": 0,
        "tags": [],
        "first_seen": None,
        "source": "lab-intel",
    }


def test_values_are_normalised(estate, lab):
    assert (
        lab.get("intel/lookup", "intel", kind="hash", value=estate.PAYLOAD_SHA256.upper()).json()["verdict"]
        == "malicious"
    )
    assert (
        lab.get("intel/lookup", "intel", kind="domain", value=estate.PHISH_DOMAIN.upper() + ".").json()["verdict"]
        == "malicious"
    )


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "email", "value": "a@b.example"},
        {"kind": "hash", "value": "not-a-hash"},
        {"kind": "ip", "value": "999.1.1.1"},
        {"kind": "domain", "value": "no spaces allowed"},
        {"kind": "ip"},
        {"value": "1.2.3.4"},
        {"kind": "ip", "value": "1.2.3.4", "extra": "1"},
    ],
)
def test_bad_lookups_are_400(estate, lab, query):
    response = lab.get("intel/lookup", "intel", **query)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
