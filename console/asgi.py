"""ASGI entry point: HTTP through Django, websockets through Channels with an exact origin check
(core.sockets) and the session's user.

Serve with `uvicorn console.asgi:application` (or `python manage.py serve`).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.config import ConfigError, exit_on_config_error  # noqa: E402

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()

    from console.config import preflight

    preflight()
except ConfigError as error:
    exit_on_config_error(error)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from console.routing import websocket_urlpatterns  # noqa: E402
from core.live import ConsumerLoopMiddleware  # noqa: E402
from core.sockets import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(ConsumerLoopMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
