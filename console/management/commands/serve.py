import logging
import os
import signal
import sys

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand
from uvicorn.main import STARTUP_FAILURE

# After SIGTERM, how long requests and sockets in flight may take before they are cancelled:
# with the hand-back below, the process is gone well within the 5 s an orchestrator may allow.
SHUTDOWN_GRACE_S = 3


class ConsoleServer(uvicorn.Server):
    """uvicorn's server, which tells the embedded worker once it listens: what the worker starts then
    (warming its tool servers and the model's SDK) takes nothing from the console's own start."""

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.started and not settings.PRODUCTION:
            from console.embedded import console_listening

            console_listening()


class Command(BaseCommand):
    help = "Serve the console over ASGI (HTTP and websockets); on the embedded default, with its worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host, port, **options):
        from console.asgi import application  # runs the start-up checks

        if not settings.PRODUCTION:
            from console.embedded import start_embedded_worker

            start_embedded_worker()
        self.stdout.write(
            f"Gatehouse console on http://{host}:{port}/ ({'production' if settings.PRODUCTION else 'embedded default'})"
        )
        # uvicorn handles SIGTERM and SIGINT while it runs, then raises the signal again under the
        # handler found before it: this one, so the process ends below rather than mid-way.
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        server = ConsoleServer(
            uvicorn.Config(
                application,
                host=host,
                port=port,
                lifespan="off",
                log_level=settings.LOG_LEVEL.lower(),
                # Forwarded headers only behind a proxy, and only its own (GATEHOUSE_TRUSTED_PROXIES).
                proxy_headers=settings.BEHIND_PROXY,
                forwarded_allow_ips=settings.TRUSTED_PROXIES,
                ws_max_size=256 * 1024,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            )
        )
        server.run()  # as uvicorn.run(application, ...) does, with our server
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        if not settings.PRODUCTION:
            from console.embedded import hand_back_embedded_work

            hand_back_embedded_work()
        # Exit now: a normal exit would join the worker's threads (an investigation runs for minutes)
        # and any thread a cancelled request left behind; their work was handed back or is abandoned.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
