"""Websockets of investigations: one investigation's transcript, and the list's status changes.

Both check who is asking before accepting (a refused handshake is a 403); foreign origins are
refused before this by console.asgi's AllowedHostsOriginValidator.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console import live
from investigations import selectors
from investigations.events import LIST_GROUP, group_name


class InvestigationConsumer(AsyncJsonWebsocketConsumer):
    """Sends the events after `?after=<seq>` (the backlog), then each new one as it is saved.

    It joins the group before reading the backlog, so nothing published in between is missed;
    an event that arrives both ways is sent once, in seq order.
    """

    async def connect(self):
        live.register_consumer_loop()
        self.investigation_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if not await database_sync_to_async(selectors.can_view_id)(self.scope["user"], self.investigation_id):
            await self.close()
            return
        self.last_seq = _after(self.scope.get("query_string", b""))
        self.group = group_name(self.investigation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for event in await database_sync_to_async(selectors.events_after)(self.investigation_id, self.last_seq):
            await self._send_event(event)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # viewers only listen

    async def investigation_event(self, message):
        await self._send_event(message["event"])

    async def _send_event(self, event: dict):
        if event["seq"] <= self.last_seq:
            return
        self.last_seq = event["seq"]
        await self.send_json({"type": "event", "event": event})


class InvestigationListConsumer(AsyncJsonWebsocketConsumer):
    """Status changes for the investigations list, filtered to what the user may see."""

    async def connect(self):
        live.register_consumer_loop()
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return
        self.sees_all = await database_sync_to_async(selectors.sees_all_investigations)(user)
        await self.channel_layer.group_add(LIST_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(LIST_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass

    async def investigation_status(self, message):
        entry = message["investigation"]
        if self.sees_all or await database_sync_to_async(selectors.can_view_id)(self.scope["user"], entry["id"]):
            await self.send_json({"type": "status", "investigation": entry})


def _after(query_string: bytes) -> int:
    from urllib.parse import parse_qs

    values = parse_qs(query_string.decode("latin-1")).get("after", ["0"])
    return int(values[0]) if values[0].isdigit() else 0
