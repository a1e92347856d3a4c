"""Grouping and the start cap under concurrent intake, on PostgreSQL: threads, each its own
connection, released together. Two alerts of one key at once make one investigation; alerts at
once never start more than the cap; two sweeps at once hand each held investigation over once."""

import threading
from collections import Counter

import pytest
from django.db import connection

from investigations.intake import services as intake
from investigations.models import Event, Investigation
from tests.investigations.test_grouping import alert_in

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]
THREADS = 8


def at_once(work, count: int = THREADS) -> list:
    """Run work(n) in `count` threads released together; their results (or exceptions), in order."""
    barrier = threading.Barrier(count, timeout=30)
    results: list = [None] * count

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_alerts_of_one_key_at_once_make_one_investigation():
    integration, _ = intake.create_integration("lab-siem")

    results = at_once(lambda n: intake.receive_alert(alert_in(n), integration=integration))

    assert not [result for result in results if isinstance(result, Exception)]
    assert Investigation.objects.count() == 1
    assert Counter(result.joined for result in results) == {True: THREADS - 1, False: 1}
    assert Investigation.objects.get().related_alerts.count() == THREADS - 1


def test_alerts_at_once_start_no_more_than_the_cap():
    integration, _ = intake.create_integration("lab-siem")
    intake.set_start_cap(integration, 3, by="test")
    integration.refresh_from_db()

    results = at_once(lambda n: intake.receive_alert(alert_in(n, host=f"h-{n}"), integration=integration))

    assert not [result for result in results if isinstance(result, Exception)]
    assert Investigation.objects.count() == THREADS
    assert Investigation.objects.filter(released_at__isnull=False).count() == 3


def test_two_sweeps_at_once_release_each_held_investigation_once():
    integration, _ = intake.create_integration("lab-siem")
    intake.set_start_cap(integration, 1, by="test")
    integration.refresh_from_db()
    for n in range(6):
        intake.receive_alert(alert_in(n, host=f"h-{n}"), integration=integration)
    intake.set_start_cap(integration, 100, by="test")  # the cap rises: all may go now

    results = at_once(lambda n: intake.release_held(), count=2)

    assert not [result for result in results if isinstance(result, Exception)]
    released = sorted(results[0] + results[1])
    assert len(released) == len(set(released)) == 5
    assert not Investigation.objects.filter(released_at__isnull=True).exists()
    events = Event.objects.filter(data__message="Released to a worker.")
    assert sorted(events.values_list("investigation_id", flat=True)) == released
