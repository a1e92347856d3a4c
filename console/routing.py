"""Websocket URL patterns of every app, gathered for console.asgi."""

from investigations.routing import websocket_urlpatterns as investigation_patterns

websocket_urlpatterns: list = [*investigation_patterns]
