"""A worker process's lease keeper renews its investigations' leases on a connection of its own: however
many of its threads wait for one of the process's pooled connections, the leases do not run out, and
the sweep does not hand a live worker's investigation to another (which would make its calls again)."""

import pytest
from django.db import connection

from investigations.models import Investigation
from investigations.runs import services
from tests.support import every_pooled_connection_but_this_threads, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.production]  # the pool is PostgreSQL's


def test_leases_are_renewed_while_every_pooled_connection_is_taken(make_investigation, settings):
    settings.INVESTIGATION_LEASE_S = 3  # renewed every second from the keeper's next round
    investigation = make_investigation()
    owner = services.claim(investigation.pk)
    claimed_until = Investigation.objects.get(pk=investigation.pk).lease_expires_at
    taken = every_pooled_connection_but_this_threads()
    try:
        with services.held(investigation.pk, owner):
            wait_until(
                lambda: Investigation.objects.get(pk=investigation.pk).lease_expires_at > claimed_until,
                # The process's one keeper may be in a sleep an earlier test began, a third of the default
                # lease (60 s). Before, it then waited the pool's 10 s and gave up, again and again.
                timeout=30,
                what="the lease renewed while the pool has no connection to give",
            )
            assert services.claim(investigation.pk) is None  # the sweep's next worker finds it held
    finally:
        for pooled in taken:
            connection.pool.putconn(pooled)
