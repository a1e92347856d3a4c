"""Rule 6: one key per action + target + trigger, claimed race-safely, kept durably."""

import threading
import time
import types
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.support import WAIT_S
from toolserver import idempotency, schemas
from toolserver.catalog import SERVERS
from toolserver.models import IdempotencyRecord

EDR = SERVERS["edr-response"]
ISOLATE = EDR.tool("isolate_host")
TICKETS = SERVERS["ticketing"]
OPEN_TICKET = TICKETS.tool("open_ticket")
pytestmark = pytest.mark.django_db


def isolate(host="WS-FIN-07", reason="Beaconing to a known C2 domain every 60 s."):
    return schemas.HostAction(host=host, reason=reason)


def test_the_key_is_action_target_and_trigger():
    first = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    assert first == idempotency.write_key(ISOLATE, isolate(host="ws-fin-07"), "alert-1")
    assert first.key != idempotency.write_key(ISOLATE, isolate(), "alert-2").key
    assert first.key != idempotency.write_key(ISOLATE, isolate(host="WS-FIN-08"), "alert-1").key
    assert first.key != idempotency.write_key(EDR.tool("release_host"), isolate(), "alert-1").key
    ticket = schemas.OpenTicket(title="Phishing on WS-FIN-07", body="Evidence: ...........", severity="high")
    assert idempotency.write_key(OPEN_TICKET, ticket, "alert-1").key != first.key


def test_free_text_does_not_change_the_fingerprint_but_material_arguments_do():
    a = schemas.OpenTicket(title="Phishing on WS-FIN-07", body="First wording of it.", severity="high")
    b = schemas.OpenTicket(title="Phishing on WS-FIN-07", body="Second wording of it.", severity="high")
    c = schemas.OpenTicket(title="Phishing on WS-FIN-07", body="First wording of it.", severity="low")
    key = idempotency.write_key
    assert key(OPEN_TICKET, a, "x").fingerprint == key(OPEN_TICKET, b, "x").fingerprint
    assert key(OPEN_TICKET, a, "x").fingerprint != key(OPEN_TICKET, c, "x").fingerprint
    assert key(ISOLATE, isolate(reason="One reason for isolating."), "x") == key(ISOLATE, isolate(), "x")


def test_first_claim_wins_and_a_repeat_gets_the_stored_result():
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    claim = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    assert isinstance(claim, idempotency.Claimed)
    result = {"status": "ok", "data": {"action_id": "ISO-1"}, "truncated": False, "source": "lab:edr"}
    idempotency.complete(write, claim.token, result, failed=False)

    repeat = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    assert isinstance(repeat, idempotency.Prior) and repeat.result == result
    assert IdempotencyRecord.objects.get().state == "succeeded"


def test_same_key_with_different_arguments_is_a_conflict():
    ticket = schemas.OpenTicket(title="Phishing on WS-FIN-07", body="Evidence: ...........", severity="high")
    other = schemas.OpenTicket(title="Something else entirely", body="Evidence: ...........", severity="high")
    first = idempotency.write_key(OPEN_TICKET, ticket, "alert-1")
    idempotency.claim(TICKETS, OPEN_TICKET, first, "alert-1")
    second = idempotency.write_key(OPEN_TICKET, other, "alert-1")
    assert second.key == first.key
    assert isinstance(idempotency.claim(TICKETS, OPEN_TICKET, second, "alert-1"), idempotency.Conflict)


def test_a_write_reversed_since_is_free_again_for_its_alert_and_target_only():
    """release_host undoes isolate_host: once a release succeeded, isolating the host again for the alert
    is sent, not replayed. Another host, another alert, or a release that failed keep the first result."""
    release = EDR.tool("release_host")

    def settle(tool, host="WS-FIN-07", trigger="alert-1", *, failed=False):
        write = idempotency.write_key(tool, isolate(host=host), trigger)
        claim = idempotency.claim(EDR, tool, write, trigger)
        assert isinstance(claim, idempotency.Claimed), (tool.name, host, trigger)
        idempotency.complete(write, claim.token, {"status": "error" if failed else "ok", "data": {}}, failed=failed)
        return write

    isolated = [settle(ISOLATE, "WS-FIN-07"), settle(ISOLATE, "WS-FIN-08"), settle(ISOLATE, trigger="alert-2")]
    settle(release, "ws-fin-07", failed=True)
    assert isinstance(idempotency.claim(EDR, ISOLATE, isolated[0], "alert-1"), idempotency.Prior)
    settle(release, "ws-fin-07", trigger="alert-3")  # released for another alert: this one's isolation stands

    released = idempotency.write_key(release, isolate(), "alert-1")
    IdempotencyRecord.objects.filter(key=released.key).delete()  # the failed release, freed by hand
    settle(release, "ws-fin-07")
    assert isinstance(idempotency.claim(EDR, ISOLATE, isolated[0], "alert-1"), idempotency.Claimed)
    assert isinstance(idempotency.claim(EDR, ISOLATE, isolated[1], "alert-1"), idempotency.Prior)
    assert isinstance(idempotency.claim(EDR, ISOLATE, isolated[2], "alert-2"), idempotency.Prior)


def test_a_repeat_while_the_first_runs_is_told_in_progress_and_never_claims():
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    idempotency.claim(EDR, ISOLATE, write, "alert-1")
    assert isinstance(idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=0), idempotency.InProgress)
    assert IdempotencyRecord.objects.count() == 1


def test_a_transient_failure_releases_the_key_and_a_permanent_one_is_kept():
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    claim = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    idempotency.release(write, claim.token)
    retry = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    assert isinstance(retry, idempotency.Claimed)

    failure = {"status": "error", "reason": "edr_forbidden", "retryable": False, "guidance": "..."}
    idempotency.complete(write, retry.token, failure, failed=True)
    again = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    assert isinstance(again, idempotency.Prior) and again.result == failure


def repeat_while_the_holder(monkeypatch, settle) -> tuple[object, idempotency.WriteKey]:
    """A repeat waits on the holder's claim; meanwhile the holder settles it with `settle(write, token)`.
    What the repeat's claim() answered, and the key."""
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    holder = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    waiting = threading.Event()

    def sleep(seconds: float) -> None:  # the repeat saw the holder's row and polls again
        waiting.set()
        time.sleep(seconds)

    monkeypatch.setattr(idempotency, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    outcome = {}

    def repeat() -> None:
        try:
            outcome["claim"] = idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=WAIT_S)
        finally:
            connection.close()

    thread = threading.Thread(target=repeat)
    thread.start()
    assert waiting.wait(WAIT_S)
    settle(write, holder.token)
    thread.join(WAIT_S)
    assert not thread.is_alive()
    return outcome.get("claim"), write


@pytest.mark.django_db(transaction=True)
def test_a_repeat_waiting_on_a_claim_whose_holder_frees_the_key_is_told_to_try_again(monkeypatch):
    """The holder's write failed transiently and release() freed the key while a repeat waited on it: the
    repeat's next look at the row raised DoesNotExist, out of claim() and Gateway.call, which never raises.
    It is told the write is in progress (retryable), not sent at once: its caller re-reads its own state first."""
    claimed, write = repeat_while_the_holder(monkeypatch, idempotency.release)
    assert isinstance(claimed, idempotency.InProgress), "claim() raised (its traceback above)"
    assert not IdempotencyRecord.objects.exists()  # the key is free: the caller's next try claims it
    assert isinstance(idempotency.claim(EDR, ISOLATE, write, "alert-1"), idempotency.Claimed)


@pytest.mark.django_db(transaction=True)
def test_a_key_whose_holder_gave_up_on_an_answer_is_taken_over_by_the_next_try_not_by_a_waiting_repeat(monkeypatch):
    """The holder's write timed out after it was sent (give_up): it may have happened. A repeat that was
    waiting is told to try again, as when the key is freed (it must re-read its own state first); the next
    try takes the key over as from a dead holder, so the gateway asks the backend before sending it."""
    claimed, write = repeat_while_the_holder(monkeypatch, idempotency.give_up)
    assert isinstance(claimed, idempotency.InProgress)
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.claim_token) == ("running", idempotency.GIVEN_UP)

    retry = idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=0)
    assert isinstance(retry, idempotency.Claimed) and retry.taken_over
    assert IdempotencyRecord.objects.get().attempts == 2


def test_a_holder_that_gave_up_cannot_renew_its_claim_back():
    """The holder's renewals may still tick after it gave up: fenced by its token, they renew nothing, so
    the next try need not wait out a lease."""
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    holder = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    idempotency.give_up(write, holder.token)
    assert not idempotency.renew(write.key, holder.token)
    assert idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=0).taken_over


def test_a_success_whose_own_key_was_freed_meanwhile_frees_nothing():
    """isolate_host succeeded, and before it freed the key of the write it reverses, that write (a
    release_host that succeeded just then) freed isolate_host's key: its row was gone, and the look-up
    raised DoesNotExist out of complete(), after the backend had acted."""
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    idempotency._free_undone(write.key)  # no row under the key: nothing to free, nothing raised


def test_an_abandoned_claim_is_taken_over_by_exactly_one_caller():
    write = idempotency.write_key(ISOLATE, isolate(), "alert-1")
    stale = idempotency.claim(EDR, ISOLATE, write, "alert-1")
    IdempotencyRecord.objects.update(lease_until=timezone.now() - timedelta(seconds=1))

    taken = idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=0)
    assert isinstance(taken, idempotency.Claimed)
    assert isinstance(idempotency.claim(EDR, ISOLATE, write, "alert-1", wait_s=0), idempotency.InProgress)
    # The abandoned holder can no longer settle the key; the new holder can.
    idempotency.complete(write, stale.token, {"status": "ok"}, failed=False)
    assert IdempotencyRecord.objects.get().state == "running"
    idempotency.complete(write, taken.token, {"status": "ok", "data": {}}, failed=False)
    assert IdempotencyRecord.objects.get().attempts == 2


def test_a_target_that_is_a_list_or_an_object_is_canonical_json_a_name_is_lower_case():
    """An external tool's target may be an object (server-memory's entities): the same one is one key
    however the model ordered its keys; a host or account name is one key however it is spelled."""
    assert idempotency._canonical({"b": 1, "a": [2]}) == idempotency._canonical({"a": [2], "b": 1})
    assert idempotency._canonical([{"y": 1, "x": 2}]) == idempotency._canonical([{"x": 2, "y": 1}])
    assert idempotency._canonical("WS-FIN-07") == "ws-fin-07"
