from django.test import Client

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."


def test_an_unknown_path_is_a_json_404(lab):
    for response in (
        lab.get("siem/nothing", "siem"),
        lab.post("edr/hosts/H-1042/explode", "edr-response", {}),
        lab.get("", token=""),
    ):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == "not_found"


def test_the_wrong_method_is_a_json_405(estate, lab):
    response = lab.post("siem/logins", "siem", {})
    assert (
        response.status_code == 405 and response.json()["error"] == "method_not_allowed" and response["Allow"] == "GET"
    )
    assert lab.get("edr/hosts/H-1042/isolate", "edr-response").status_code == 405


def test_writes_need_no_csrf_token(estate, lab_keys):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/lab/api/edr/hosts/H-1042/isolate",
        {"reason": REASON},
        content_type="application/json",
        headers={"Authorization": f"Bearer {lab_keys['edr-response']}"},
    )
    assert response.status_code == 200


def test_every_answer_is_json(estate, lab):
    for response in (
        lab.get("health", "siem"),
        lab.get("siem/logins", "siem", limit="x"),
        lab.get("health", token="nope"),
    ):
        assert response["Content-Type"] == "application/json"
