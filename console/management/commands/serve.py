import os

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


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
        self.stdout.write(f"Gatehouse console on http://{host}:{port}/ ({'production' if settings.PRODUCTION else 'embedded default'})")
        uvicorn.run(
            application,
            host=host,
            port=port,
            lifespan="off",
            log_level=settings.LOG_LEVEL.lower(),
            proxy_headers=True,
            ws_max_size=256 * 1024,
        )
