"""A real worker process for the tests: it runs investigations, and can be killed and restarted.

In production mode it is `celery -A console worker` (with its beat, for the sweep) on Redis; on
the embedded default the worker lives in a thread of the console (`manage.py serve`), so the
worker process is a console process. Either way it is a separate process the test can kill.
"""

import os
import signal
import subprocess
import sys
from contextlib import contextmanager, suppress

from django.conf import settings
from django.db import connection

from tests.support import ROOT, STOP_S, ConsoleProcess, console_env, database_url_of

LOG_TAIL = 200


def worker_env(lab, **overrides) -> dict[str, str]:
    return console_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        **lab.environment(),
        GATEHOUSE_OFFLINE_MODEL_DELAY_MS="0",
        # A killed worker's investigation is free again 10 s later: short for a test, long enough that a
        # busy SQLite (the embedded default) never delays a live worker's renewal past it.
        GATEHOUSE_INVESTIGATION_LEASE_S="10",
        GATEHOUSE_SWEEP_INTERVAL_S="1",
        **overrides,
    )


class WorkerProcess:
    def __init__(self, env: dict[str, str], tmp_path, *, beat: bool = True, concurrency: int = 2):
        self.env, self.tmp_path, self.beat, self.concurrency = env, tmp_path, beat, concurrency
        self.console: ConsoleProcess | None = None
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "WorkerProcess":
        self.starts += 1
        if settings.PRODUCTION:
            with open(self.tmp_path / f"worker-{self.starts}.log", "w") as log:  # the worker holds its own copy
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "console",
                        "worker",
                        "--pool=threads",
                        "-c",
                        str(self.concurrency),
                        *(["-B"] if self.beat else []),
                        "--without-heartbeat",
                        "--without-mingle",
                        "--without-gossip",
                        "-l",
                        "INFO",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the tool servers it starts die with it
                )
        else:
            self.console = ConsoleProcess(self.env, new_session=True)
            self.process = self.console.process
        return self

    def kill(self) -> None:
        """SIGKILL to the worker and every process it started: nothing gets to clean up."""
        with suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_S)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_S)
        self.kill()  # and whatever it started that outlived it (its process group)
        if self.console:
            self.console.stop()
        # Captured: pytest shows it only beside a failure, where it says what the worker did (a CI log
        # is all there is to read of a run elsewhere).
        print(f"--- the worker's log (start {self.starts}), last {LOG_TAIL} lines:")
        print("\n".join(self.log().splitlines()[-LOG_TAIL:]))

    def log(self) -> str:
        if self.console:
            return self.console.log()
        return (self.tmp_path / f"worker-{self.starts}.log").read_text()


@contextmanager
def console_and_worker(env: dict[str, str], tmp_path):
    """A console, and what runs its tasks: its own in-process worker on the embedded default, a
    `celery worker` beside it (reaching the console's lab) in production mode."""
    console = ConsoleProcess(env)
    worker = None
    try:
        if settings.PRODUCTION:
            worker = WorkerProcess({**env, "GATEHOUSE_LAB_URL": f"{console.url}/lab/api"}, tmp_path).start()
        yield console
    finally:
        if worker is not None:
            worker.stop()
        console.stop()
