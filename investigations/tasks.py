"""Celery tasks: thin wrappers that take ids and call plain functions. Safe to run twice."""

import logging

from celery import shared_task
from django.conf import settings

from investigations.approvals.channels import deliveries
from investigations.approvals.services import execute, expire_due, stalled_executions
from investigations.intake import services as intake
from investigations.runs import agent, services

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_investigation(self, investigation_id: int) -> None:
    """The database away for a moment (agent.DATABASE_AWAY) is tried again later, up to DB_RETRIES times
    (read as it runs, not as this module is imported); on the last try it fails the investigation."""
    tries_left = self.request.retries < settings.DB_RETRIES
    try:
        agent.run(investigation_id, retry_database_errors=tries_left)
    except agent.DATABASE_AWAY as exc:
        countdown = settings.DB_RETRY_S * 2**self.request.retries
        raise self.retry(exc=exc, countdown=countdown, max_retries=settings.DB_RETRIES) from exc


@shared_task(ignore_result=True)
def sweep_investigations(queued_for_s: float | None = None) -> list[int]:
    """Hand every investigation no worker is running to a worker (periodic, and at worker start).

    First the held ones their integrations' start caps allow now (investigations/intake/services.py).
    Queued ones whose task was lost (enqueued by a process with no broker, or before a restart)
    and running ones whose worker died: the next worker resumes them from their last saved step.
    Waiting ones whose requests are all decided (their resume lost) are resumed.
    A duplicate hand-over is harmless: only one worker can claim an investigation.
    """
    if queued_for_s is None:
        queued_for_s = settings.SWEEP_INTERVAL_S
    released = intake.release_held()  # handed over on commit, each by its own task
    if released:
        log.info("released %d held investigation(s) as their start caps allow: %s", len(released), released)
    found = [pk for pk in services.stalled(queued_for_s=queued_for_s) if pk not in released]
    for investigation_id in found:
        run_investigation.delay(investigation_id)
    # Decided, but their resume lost: queued now, each handed to a worker as its resume commits.
    found += [pk for pk in services.decided_but_waiting(waiting_for_s=queued_for_s) if services.resume(pk)]
    if found:
        log.info("handed %d stalled investigation(s) to workers: %s", len(found), found)
    return found


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_action(request_id: int) -> None:
    execute(request_id)


@shared_task(ignore_result=True)
def deliver_notifications(delivery_ids: list[int]) -> list[int]:
    """Send the approval channels' deliveries of a change just committed (the sweep retries the failed)."""
    return deliveries.deliver(delivery_ids)


@shared_task(ignore_result=True)
def sweep_actions() -> dict:
    """Expire undecided requests past their time; tell the approval channels of overdue requests and
    send the deliveries due (failed ones again, after their backoff); hand approved requests no worker
    ran to one."""
    expired = expire_due()
    stalled = stalled_executions(approved_for_s=settings.SWEEP_INTERVAL_S)
    for request_id in stalled:
        execute_action.delay(request_id)
    deliveries.sweep()  # last: telling people must never hold up an approved write
    return {"expired": expired, "executing": stalled}
