"""The Celery app. Workers: `celery -A console worker` (production), or the embedded thread."""

import os
import threading

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def check_configuration_before_work(**kwargs):
    """A worker with a wrong DATABASE_URL or REDIS_URL stops at once, with one line."""
    from console.environment import ConfigError, exit_on_config_error, preflight

    try:
        preflight()
    except ConfigError as error:
        exit_on_config_error(error)


@worker_ready.connect
def resume_stalled_work(**kwargs):
    """A worker that starts takes over what no worker is running (queued while none ran, or orphaned),
    then sweeps every SWEEP_INTERVAL_S itself: recovery does not wait for beat, nor, without it, for
    the broker's visibility timeout. Sweeps from several workers at once are harmless: each hand-over
    is guarded."""
    from django.conf import settings

    from investigations.tasks import sweep_actions, sweep_investigations

    sweep_investigations.delay(queued_for_s=0)
    sweep_actions.delay()
    if not settings.PRODUCTION:
        return  # the embedded worker's console runs the periodic sweep already (console.embedded)

    def sweep_periodically():
        while not stopping.wait(settings.SWEEP_INTERVAL_S):
            sweep_investigations.delay()
            sweep_actions.delay()

    stopping = threading.Event()
    threading.Thread(target=sweep_periodically, name="gatehouse-sweep", daemon=True).start()


def warm_worker() -> threading.Thread:
    """What a worker's first investigation would otherwise wait for: its tool servers and the model's SDK,
    in a thread beside the worker (it is ready meanwhile). One thread, one import after the other."""
    from core.startup import collector_paused
    from investigations.runs import llm
    from toolserver.supervisor import warm_tool_servers

    def warm():
        warm_tool_servers()
        # The SDK's second of imports, a quarter less without the collector. The pause is the process's: a
        # task running beside it goes without the collector for that second, and what it holds then is frozen.
        with collector_paused():
            llm.load_sdk()

    thread = threading.Thread(target=warm, name="gatehouse-warm", daemon=True)
    thread.start()
    return thread


@worker_ready.connect
def warm_this_worker(sender=None, **kwargs):
    """A prefork worker's tasks run in its children: each warms its own (below), not this parent."""
    from celery.concurrency.prefork import TaskPool as Prefork

    if not isinstance(getattr(sender, "pool", None), Prefork):
        warm_worker()


@worker_process_init.connect
def warm_this_child(**kwargs):
    warm_worker()
