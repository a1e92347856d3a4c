import hashlib
import json
import logging

import pytest

from toolserver.lab import faults
from toolserver.lab.keys import SERVER_SCOPES, issue_key, revoke_key
from toolserver.lab.models import LabKey, LabWrite

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."

# Every endpoint with the scope it needs: (method, path, body).
ENDPOINTS = [
    ("siem:read", "GET", "siem/logins", None),
    ("siem:read", "GET", "siem/events", None),
    ("edr:read", "GET", "edr/hosts/H-1042", None),
    ("edr:read", "GET", "edr/hosts/H-1042/processes", None),
    ("edr:read", "GET", "edr/hosts/H-1042/connections", None),
    ("edr:isolate", "POST", "edr/hosts/H-1042/isolate", {"reason": REASON}),
    ("edr:isolate", "POST", "edr/hosts/H-1042/release", {"reason": REASON}),
    ("identity:read", "GET", "identity/users/j.doe", None),
    ("identity:write", "POST", "identity/users/j.doe/disable", {"reason": REASON}),
    ("identity:write", "POST", "identity/users/j.doe/enable", {"reason": REASON}),
    ("tickets:write", "POST", "tickets", {"title": "Phish", "body": "Details", "severity": "high", "alert_ref": "A-1"}),
    ("tickets:write", "POST", "tickets/4471/comments", {"body": "More"}),
    ("intel:read", "GET", "intel/lookup", None),
]


def call(lab, method, path, body, server=None, token=None):
    if method == "GET":
        return lab.get(path, server, token=token)
    return lab.post(path, server, body, token=token)


@pytest.mark.parametrize("scope, method, path, body", ENDPOINTS, ids=[f"{m} {p}" for _, m, p, _ in ENDPOINTS])
def test_each_endpoint_needs_its_scope(lab, scope, method, path, body):
    for server, scopes in SERVER_SCOPES.items():
        response = call(lab, method, path, body, server)
        if scope in scopes:
            assert response.status_code not in (401, 403), server
        else:
            assert response.status_code == 403, server
            assert response.json() == {"error": "forbidden", "needed_scope": scope}


@pytest.mark.parametrize("scope, method, path, body", ENDPOINTS, ids=[f"{m} {p}" for _, m, p, _ in ENDPOINTS])
def test_each_endpoint_refuses_a_missing_or_unknown_key(lab, scope, method, path, body):
    for token in ("", "lab_not-a-key"):
        response = call(lab, method, path, body, token=token)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_only_the_bearer_scheme_carries_a_key(client, lab_keys):
    key = lab_keys["siem"]
    assert client.get("/lab/api/health", headers={"Authorization": f"Basic {key}"}).status_code == 401
    assert client.get("/lab/api/health", headers={"Authorization": key}).status_code == 401
    assert client.get("/lab/api/health", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_the_siem_key_cannot_isolate_a_host(estate, lab):
    response = lab.post("edr/hosts/WS-FIN-07/isolate", "siem", {"reason": REASON})
    assert response.status_code == 403
    assert response.json()["needed_scope"] == "edr:isolate"
    assert lab.get("edr/hosts/WS-FIN-07", "edr").json()["isolated"] is False


def test_health_answers_any_valid_key_with_its_name_and_scopes(lab):
    for server, scopes in SERVER_SCOPES.items():
        response = lab.get("health", server)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "key": server, "scopes": scopes}


def test_a_revoked_key_is_refused(lab):
    assert lab.get("health", "intel").status_code == 200
    assert revoke_key("intel") == 1
    assert lab.get("health", "intel").status_code == 401


def test_reissuing_a_key_revokes_the_old_one(lab):
    old = lab.keys["siem"]
    new = issue_key("siem", ["siem:read"])
    assert lab.get("health", token=old).status_code == 401
    assert lab.get("health", token=new).json()["key"] == "siem"
    assert LabKey.objects.filter(name="siem").count() == 2
    assert LabKey.objects.filter(name="siem", revoked_at__isnull=True).count() == 1


def test_only_the_hash_of_a_key_is_stored(lab_keys):
    key = lab_keys["edr"]
    row = LabKey.objects.get(name="edr", revoked_at__isnull=True)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(list(LabKey.objects.values()), default=str)


def test_unknown_scopes_are_refused_when_issuing(db):
    with pytest.raises(ValueError, match="unknown scopes: siem:write"):
        issue_key("oops", ["siem:write"])


def test_the_key_never_appears_in_responses_logs_or_the_write_log(estate, lab, caplog):
    caplog.set_level(logging.DEBUG)
    key = lab.keys["edr-response"]
    near_miss = key[:-1] + ("A" if key[-1] != "A" else "B")
    faults.inject("edr", "error_5xx", remaining=1)
    responses = [
        lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}),  # fault
        lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="k"),
        lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="k"),  # replay
        lab.post("edr/hosts/H-1042/isolate", "edr-response", raw=b"{not json"),
        lab.post("edr/hosts/NOPE/isolate", "edr-response", {"reason": REASON}),
        lab.post("edr/hosts/H-1042/isolate", token=near_miss, body={"reason": REASON}),
        lab.get("edr/hosts/H-1042", token=key),
        lab.get("health", token=key),
        lab.get("no/such/endpoint", token=key),
    ]
    assert [r.status_code for r in responses] == [503, 200, 200, 400, 404, 401, 403, 200, 404]
    for response in responses:
        assert key not in response.content.decode()
        assert near_miss not in response.content.decode()
    assert key not in caplog.text and near_miss not in caplog.text
    assert key not in json.dumps(list(LabWrite.objects.values()), default=str)
