"""The embedded default's Celery worker: real Celery, in a thread of the web process.

The memory broker lives in this process, so only a worker in this process can see its
queue. Production runs `celery -A console worker` instead.
"""

import logging
import threading

from celery import signals
from celery.beat import EmbeddedService
from celery.worker import WorkController
from django.conf import settings

from console.celery import app
from investigations.runs import services

log = logging.getLogger(__name__)


# Set once the console listens (console_listening, from `serve`).
_listening = threading.Event()


class EmbeddedWorker(WorkController):
    """Celery's worker as the CLI runs it, less its command line. Its base class sends no worker_ready (the
    CLI's celery.apps.worker.Worker does), so console.celery's handlers, which take over what no worker ran
    and warm the tool servers and the model's SDK, did not run for it. Here they run once the console
    listens: their work (processes started, modules imported) then does not delay its first answer."""

    def on_consumer_ready(self, consumer):
        def once_listening():
            _listening.wait()
            signals.worker_ready.send(sender=consumer)

        threading.Thread(target=once_listening, name="embedded-worker-ready", daemon=True).start()


def console_listening() -> None:
    _listening.set()


def start_embedded_worker() -> WorkController:
    if settings.PRODUCTION:
        raise RuntimeError("the embedded worker is for the embedded default; run `celery -A console worker`")
    app.finalize()
    app.set_current()
    app.set_default()
    worker = EmbeddedWorker(
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
    embedded_beat().start()
    log.info("embedded Celery worker started (%d threads)", settings.EMBEDDED_WORKER_CONCURRENCY)
    return worker


def embedded_beat():
    """The periodic sweep, in a thread too: the worker's own `beat=True` forks a process, and a forked
    process's memory broker is not this one's. Celery's embedded service takes its scheduler from its
    arguments, not from settings (the CLI reads those): without it, each console kept a schedule shelve
    in its working directory, one file for every console started there, and a beat thread reading it
    while another console wrote it stopped on a truncated file."""
    return EmbeddedService(app, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER)


def hand_back_embedded_work() -> None:
    """The console is stopping (serve, on SIGTERM): give back the investigations the worker's threads
    are running, for the next start's sweep to resume at once. Nothing waits for those threads."""
    handed = services.hand_back()
    if handed:
        log.info("handed back %d running investigation(s): %s", len(handed), handed)
