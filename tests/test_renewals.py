"""core.db.renewed_every: the thread that keeps a write's leases while its backend answers."""

import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

from core.db import renewed_every
from tests.support import WAIT_S, wait_until


def test_a_renewal_that_raises_is_tried_again_at_the_next_interval(caplog):
    """The database away for one renewal: the next one still comes. Before, the exception ended the
    thread, and the write's lease (or its key's claim) ran out under it, for another worker to take."""
    renewals = 0
    renewed_after_the_failure = threading.Event()

    def renew() -> bool:
        nonlocal renewals
        renewals += 1
        if renewals == 1:
            raise OperationalError("the server closed the connection unexpectedly")
        renewed_after_the_failure.set()
        return True

    with renewed_every(0.01, renew, name="lease-renewal-test"):
        assert renewed_after_the_failure.wait(WAIT_S), "no renewal after the one that failed"
    assert "lease-renewal-test: could not renew" in caplog.text


def test_renewals_stop_when_there_is_nothing_left_to_renew():
    renewals = []
    stopped = threading.Event()

    def renew() -> bool:
        renewals.append(1)
        if len(renewals) == 2:
            stopped.set()
        return len(renewals) < 2  # the claim is gone at the second renewal

    with renewed_every(0.01, renew, name="claim-renewal-test"):
        assert stopped.wait(WAIT_S)
        wait_until(
            lambda: all(thread.name != "claim-renewal-test" for thread in threading.enumerate()),
            timeout=WAIT_S,
            what="the renewer to end once renew() said there is nothing left",
        )
    assert len(renewals) == 2


@pytest.mark.django_db
def test_renewals_are_made_on_a_connection_of_their_own_closed_after_each():
    """A renewal took a connection from the process's pool: behind hundreds of investigations' threads
    it came after the lease ran out, and another worker took over a write still at its backend. Its own
    (core.db.own_connection; on SQLite every thread's is), and open only while it renews."""
    used = []

    def renew() -> bool:
        used.append(connections[DEFAULT_DB_ALIAS])
        used[-1].ensure_connection()
        return len(used) < 2

    with renewed_every(0.01, renew, name="own-connection-test"):
        wait_until(lambda: len(used) == 2, timeout=WAIT_S, what="two renewals")
    assert all(thread.name != "own-connection-test" for thread in threading.enumerate())
    assert not any(wrapper.settings_dict["OPTIONS"].get("pool") for wrapper in used)
    assert all(wrapper.connection is None for wrapper in used)  # closed, not left open for the thread's life
