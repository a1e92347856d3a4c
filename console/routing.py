"""Websocket URL patterns of every app, gathered for console.asgi."""

websocket_urlpatterns: list = []
