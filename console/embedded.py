"""The embedded default's Celery worker: real Celery, in a thread of the web process.

The memory broker lives in this process, so only a worker in this process can see its
queue. Production runs `celery -A console worker` instead.
"""

import logging
import threading

from celery.beat import EmbeddedService
from celery.worker import WorkController
from django.conf import settings

from console.celery import app, warm_worker
from investigations.runs import services
from investigations.tasks import sweep_investigations

log = logging.getLogger(__name__)


def start_embedded_worker() -> WorkController:
    if settings.PRODUCTION:
        raise RuntimeError("the embedded worker is for the embedded default; run `celery -A console worker`")
    app.finalize()
    app.set_current()
    app.set_default()
    worker = WorkController(
        app=app,
        hostname="embedded@gatehouse",
        pool="threads",
        concurrency=settings.EMBEDDED_WORKER_CONCURRENCY,
        loglevel=settings.LOG_LEVEL,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    threading.Thread(target=worker.start, name="embedded-celery-worker", daemon=True).start()
    # The periodic sweep, in a thread too: the worker's own `beat=True` forks a process, and a
    # forked process's memory broker is not this one's.
    EmbeddedService(app, thread=True).start()
    # What no worker ran before this one started (the demo seeded by `make run`, work a killed
    # console left behind). The CLI worker does the same on its worker_ready signal.
    sweep_investigations.delay(queued_for_s=0)
    warm_worker()  # as the CLI worker does when it is ready
    log.info("embedded Celery worker started (%d threads)", settings.EMBEDDED_WORKER_CONCURRENCY)
    return worker


def hand_back_embedded_work() -> None:
    """The console is stopping (serve, on SIGTERM): give back the investigations the worker's threads
    are running, for the next start's sweep to resume at once. Nothing waits for those threads."""
    handed = services.hand_back()
    if handed:
        log.info("handed back %d running investigation(s): %s", len(handed), handed)
