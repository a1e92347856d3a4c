import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from tests.support import WAIT_S
from toolserver.lab import estate as lab_estate
from toolserver.lab.keys import issue_key
from toolserver.lab.models import Host, LabWrite, Ticket

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."


def outcomes() -> Counter:
    return Counter(LabWrite.objects.values_list("outcome", flat=True))


def test_a_performed_write_is_recorded_in_full(estate, lab):
    response = lab.post(
        "edr/hosts/WS-FIN-07/isolate", "edr-response", {"reason": REASON}, idempotency_key="iso:H-1042:A-1"
    )
    write = LabWrite.objects.get()
    assert write.backend == "edr" and write.action == "isolate_host"
    assert write.target == "H-1042"  # however the host was named in the path
    assert write.key_name == "edr-response" and write.idempotency_key == "iso:H-1042:A-1"
    assert write.payload == {"reason": REASON}
    assert write.status == 200 and write.response == response.json()
    assert write.outcome == "performed" and write.received_at is not None


def test_a_repeat_without_a_key_finds_the_host_already_isolated(estate, lab):
    lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON})
    lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON})
    assert outcomes() == {"performed": 1, "already": 1}


def test_a_repeated_idempotency_key_replays_the_first_answer_and_changes_nothing(estate, lab):
    first = lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="K1")
    lab.post("edr/hosts/H-1042/release", "edr-response", {"reason": REASON})  # someone releases it meanwhile
    again = lab.post("edr/hosts/WS-FIN-07/isolate", "edr-response", {"reason": REASON}, idempotency_key="K1")
    assert again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert lab.get("edr/hosts/H-1042", "edr").json()["isolated"] is False  # the replay did not isolate it again
    assert outcomes() == {"performed": 2, "replayed": 1}
    replayed = LabWrite.objects.get(outcome="replayed")
    assert replayed.response == first.json() and replayed.idempotency_key == "K1"


def test_a_replayed_ticket_is_the_same_ticket(estate, lab):
    ticket = {"title": "Phish", "body": "Details", "severity": "high", "alert_ref": "A-1"}
    first = lab.post("tickets", "ticketing", ticket, idempotency_key="ticket:A-1")
    again = lab.post("tickets", "ticketing", ticket, idempotency_key="ticket:A-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"ticket_id": "4471", "url": "/lab/tickets/4471"}
    assert Ticket.objects.count() == 1


def test_an_idempotency_key_reused_for_another_target_is_a_conflict(estate, lab):
    lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="K1")
    response = lab.post("edr/hosts/SRV-APP-03/isolate", "edr-response", {"reason": REASON}, idempotency_key="K1")
    assert response.status_code == 409 and response.json()["error"] == "idempotency_conflict"
    assert lab.get("edr/hosts/SRV-APP-03", "edr").json()["isolated"] is False
    assert outcomes() == {"performed": 1, "rejected": 1}


def test_keys_are_per_backend(estate, lab):
    lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON}, idempotency_key="same")
    response = lab.post("identity/users/j.doe/disable", "identity", {"reason": REASON}, idempotency_key="same")
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert outcomes() == {"performed": 2}


def test_every_refused_write_is_recorded_as_rejected(estate, lab):
    statuses = [
        lab.post("edr/hosts/H-1042/isolate", token="lab_wrong", body={"reason": REASON}).status_code,
        lab.post("edr/hosts/H-1042/isolate", "siem", {"reason": REASON}).status_code,
        lab.post("edr/hosts/H-1042/isolate", "edr-response", raw=b"nope").status_code,
        lab.post("edr/hosts/NOPE/isolate", "edr-response", {"reason": REASON}).status_code,
        lab.post("tickets/4471/comments", "ticketing", {"body": "hello"}).status_code,
    ]
    assert statuses == [401, 403, 400, 404, 404]
    rows = list(LabWrite.objects.order_by("id").values_list("outcome", "status", "key_name", "target"))
    assert rows == [
        ("rejected", 401, "", "H-1042"),
        ("rejected", 403, "siem", "H-1042"),
        ("rejected", 400, "edr-response", "H-1042"),
        ("rejected", 404, "edr-response", "NOPE"),
        ("rejected", 404, "ticketing", "4471"),
    ]
    assert LabWrite.objects.get(status=400).payload == {"unparsed_body": "nope"}
    assert Host.objects.filter(isolated=True).count() == 0


def test_reads_are_not_recorded(estate, lab):
    lab.get("edr/hosts/H-1042", "edr")
    lab.get("siem/logins", "siem")
    assert not LabWrite.objects.exists()


def _post_concurrently(n: int, path: str, token: str, body: dict, idempotency_key) -> list[int]:
    """n threads, each with its own client and database connection, released together."""
    start = threading.Barrier(n)

    def post(i: int) -> int:
        try:
            client = Client()
            start.wait(timeout=WAIT_S)
            return client.post(
                path,
                body,
                content_type="application/json",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": idempotency_key(i),
                },
            ).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(post, range(n)))


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_key", [False, True], ids=["different-keys", "same-key"])
def test_fifty_concurrent_isolations_perform_exactly_once(same_key):
    lab_estate.seed()
    token = issue_key("edr-response", ["edr:isolate"])
    statuses = _post_concurrently(
        50,
        f"/lab/api/edr/hosts/{lab_estate.PHISHED_HOST}/isolate",
        token,
        {"reason": REASON},
        (lambda i: "iso:H-1042:LAB-SIEM-1001") if same_key else (lambda i: f"iso:H-1042:attempt-{i}"),
    )
    assert statuses == [200] * 50
    assert outcomes() == ({"performed": 1, "replayed": 49} if same_key else {"performed": 1, "already": 49})
    assert Host.objects.get(hostname=lab_estate.PHISHED_HOST).isolated is True


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_key", [False, True], ids=["different-keys", "same-key"])
def test_fifty_concurrent_tickets_get_one_number_each_or_one_ticket(same_key):
    lab_estate.seed()
    token = issue_key("ticketing", ["tickets:write"])
    body = {"title": "Phish", "body": "Details", "severity": "high", "alert_ref": "LAB-SIEM-1001"}
    statuses = _post_concurrently(
        50,
        "/lab/api/tickets",
        token,
        body,
        (lambda i: "ticket:LAB-SIEM-1001") if same_key else (lambda i: f"ticket-{i}"),
    )
    assert statuses == [201] * 50
    numbers = sorted(Ticket.objects.values_list("number", flat=True))
    assert numbers == ([4471] if same_key else list(range(4471, 4521)))
    assert outcomes() == ({"performed": 1, "replayed": 49} if same_key else {"performed": 50})
