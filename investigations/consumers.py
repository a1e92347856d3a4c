"""Websockets of investigations: one investigation's transcript, the list's status changes, and
the approval queue's changes.

Each checks who is asking before accepting (a refused handshake is a 403); foreign origins are
refused before this by console.asgi's AllowedHostsOriginValidator.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from investigations import selectors, views_approvals
from investigations.actions import APPROVALS_GROUP
from investigations.events import LIST_GROUP, group_name


class InvestigationConsumer(AsyncJsonWebsocketConsumer):
    """Sends the events after `?after=<seq>` (the backlog), then each new one as it is saved.

    It joins the group before reading the backlog, so nothing published in between is missed;
    an event that arrives both ways is sent once, in seq order.
    """

    async def connect(self):
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


class ApprovalsConsumer(AsyncJsonWebsocketConsumer):
    """Changes of action requests, for the approval queue, the decision cards and the navigation count.

    Only users who see some investigation may listen, and each one is sent only the requests of
    investigations they may view, with their own pending count. On connect it sends a snapshot
    (the count; with `?queue=1` also the queue's requests), so a reconnect catches up.
    """

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return
        self.sees_all = await database_sync_to_async(selectors.sees_all_investigations)(user)
        if not (self.sees_all or await database_sync_to_async(views_approvals.sees_any_investigation)(user)):
            await self.close()
            return
        self.joined = True
        await self.channel_layer.group_add(APPROVALS_GROUP, self.channel_name)
        await self.accept()
        with_requests = _flag(self.scope.get("query_string", b""), "queue")
        await self.send_json(await database_sync_to_async(views_approvals.snapshot)(user, with_requests=with_requests))

    async def disconnect(self, code):
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(APPROVALS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # decisions are posted to the views, never sent over the socket

    async def approvals_changed(self, message):
        entry = await database_sync_to_async(views_approvals.live_entry)(
            self.scope["user"], message["request"], sees_all=self.sees_all
        )
        if entry is not None:
            await self.send_json(entry)


def _flag(query_string: bytes, name: str) -> bool:
    from urllib.parse import parse_qs

    return parse_qs(query_string.decode("latin-1")).get(name, [""])[0] == "1"


def _after(query_string: bytes) -> int:
    from urllib.parse import parse_qs

    values = parse_qs(query_string.decode("latin-1")).get("after", ["0"])
    return int(values[0]) if values[0].isdigit() else 0
