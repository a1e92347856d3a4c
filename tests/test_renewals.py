"""core.db.renewed_every: the thread that keeps a write's leases while its backend answers."""

import threading

from django.db import OperationalError

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
