"""console.asgi's application plus `/ws/bare/<group>/`: the baseline of bench/stream.py.

The bare consumer joins the group and forwards each message's text as-is. It sits behind the
same SameOriginValidator (core.sockets) but not AuthMiddlewareStack: no session or user lookup,
so no database at all. The console's consumers also re-read who is listening before a message
when their last check is older than SOCKET_RECHECK_SECONDS (3 s): a rare database read on the
per-message path measured.

    uvicorn bench.stream_asgi:application   (from the repository root)
"""

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from console.asgi import application as console_application
from core.sockets import SameOriginValidator


class BareConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def bench_message(self, message):  # group_send type "bench.message"
        await self.send(text_data=message["text"])


bare = SameOriginValidator(URLRouter([path("ws/bare/<str:group>/", BareConsumer.as_asgi())]))


async def application(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"].startswith("/ws/bare/"):
        return await bare(scope, receive, send)
    return await console_application(scope, receive, send)
