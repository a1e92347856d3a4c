"""A worker process keeps the leases its runs hold (runs.services.held): a run that ends lets go of its own
lease only, never of the run that took its investigation over in the same process (a worker's hundreds of
threads: the sweep hands a lapsed lease to another thread of it)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from investigations.models import Investigation
from investigations.runs import services

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_that_lost_its_lease_leaves_the_new_holders_lease_kept(make_investigation):
    investigation = make_investigation()
    first_run = services.held(investigation.pk, services.claim(investigation.pk))
    first_run.__enter__()
    Investigation.objects.filter(pk=investigation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = services.claim(investigation.pk)  # the sweep's hand-over, to another thread of this process
    assert second is not None
    second_run = services.held(investigation.pk, second)
    second_run.__enter__()
    first_run.__exit__(None, None, None)  # the first run ends: its next fenced write raised LeaseLost
    assert services.renew_held() == 1  # the second's lease is still kept
    second_run.__exit__(None, None, None)
    assert services.renew_held() == 0
