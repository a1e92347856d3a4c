"""ASGI entry point: HTTP through Django, websockets through Channels with an exact origin check
(core.sockets) and the session's user.

Serve with `python manage.py serve`, which gives uvicorn the forwarded headers to believe
(GATEHOUSE_BEHIND_PROXY, GATEHOUSE_TRUSTED_PROXIES); uvicorn run by hand needs the same as its flags.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.environment import ConfigError, exit_on_config_error

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()

    from console.environment import preflight

    preflight()
except ConfigError as error:
    exit_on_config_error(error)

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from console.routing import websocket_urlpatterns
from core.live import ConsumerLoopMiddleware
from core.sockets import SameOriginValidator

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(ConsumerLoopMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)
