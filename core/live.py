"""group_send from synchronous code (Celery workers, views), on one long-lived event loop.

`async_to_sync(layer.group_send)` would start a new event loop for every call: with Redis that
is a new connection per message, and with the in-memory layer of the embedded default the
message never arrives, because that layer's queues belong to the loop its consumers wait on
(the web server's) and are not thread-safe. So:
- in-memory layer: messages are sent on the consumers' loop, which the websocket router
  registers as a connection comes in (none came in this process: nobody to tell);
- any other layer (Redis): messages are sent on a loop of our own, in a thread, kept for the
  life of the process so its connection pool is reused.
"""

import asyncio
import os
import threading

from channels.layers import InMemoryChannelLayer, get_channel_layer

SEND_TIMEOUT_S = 5

_consumer_loop: asyncio.AbstractEventLoop | None = None
_own_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
_lock = threading.Lock()


def register_consumer_loop() -> None:
    """The in-memory layer must be woken on the loop its consumers run on: this one."""
    global _consumer_loop
    _consumer_loop = asyncio.get_running_loop()


class ConsumerLoopMiddleware:
    """Wraps the websocket router (console.asgi), so every consumer's loop is registered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        register_consumer_loop()
        return await self.app(scope, receive, send)


def group_send(*messages: tuple[str, dict]) -> None:
    """Send (group, message) pairs in order; raises if the layer does not take them in time."""
    layer = get_channel_layer()
    loop = _loop_for(layer)
    if loop is None:
        return

    async def send_all():
        for group, message in messages:
            await layer.group_send(group, message)

    asyncio.run_coroutine_threadsafe(send_all(), loop).result(timeout=SEND_TIMEOUT_S)


def _loop_for(layer) -> asyncio.AbstractEventLoop | None:
    if isinstance(layer, InMemoryChannelLayer):
        loop = _consumer_loop
        return loop if loop is not None and loop.is_running() else None
    global _own_loop
    with _lock:
        if _own_loop is None or _own_loop[0] != os.getpid():  # a forked worker needs its own thread
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-sender", daemon=True).start()
            _own_loop = (os.getpid(), loop)
        return _own_loop[1]
