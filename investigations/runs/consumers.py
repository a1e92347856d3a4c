"""Websockets of investigations: one investigation's transcript and the list's status changes.

Each checks who is asking before accepting (a refused handshake is a 403) and again before each
message it sends, and closes with 4403 once their access has ended (core.sockets); foreign
origins are refused before this by console.asgi's SameOriginValidator.
"""

from channels.db import database_sync_to_async

from core.sockets import AccessCheckedConsumer, query_number
from investigations import live_messages
from investigations.models import Investigation, sees_every_investigation
from investigations.runs import selectors


class InvestigationConsumer(AccessCheckedConsumer):
    """Sends the events after `?after=<seq>` (the backlog), then each new one as it is saved.

    It joins the group before reading the backlog, so nothing published in between is missed;
    an event that arrives both ways is sent once, in seq order.
    """

    def may_listen(self, user) -> bool:
        return _sees(user, self.investigation_id)

    async def connect(self):
        self.investigation_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if not await self.admit():
            return
        self.last_seq = query_number(self.scope.get("query_string", b""), "after") or 0
        await self.join(live_messages.investigation_group(self.investigation_id))
        await self.accept()
        for event in await database_sync_to_async(selectors.events_after)(self.investigation_id, self.last_seq):
            await self._send_event(event)

    async def investigation_event(self, message):
        await self._send_event(message["event"])

    async def _send_event(self, event: dict):
        if event["seq"] <= self.last_seq or not await self.still_allowed():
            return
        self.last_seq = event["seq"]
        await self.send_json(live_messages.event_message(event))


class InvestigationListConsumer(AccessCheckedConsumer):
    """Status changes for the investigations list, of what the user may see.

    The publisher (runs/events.py) chose who hears of each change: the group of those who see all,
    and the own group of each user granted the investigation. This socket hears both and sends on
    what is meant for its user as last checked (live_messages.meant_for): nothing is queried per change.
    """

    sees_all = False

    def may_listen(self, user) -> bool:
        self.sees_all = sees_every_investigation(user)
        return True  # any signed-in user has the list; what it is sent is filtered

    async def connect(self):
        if not await self.admit():
            return
        await self.join(live_messages.LIST_ALL)
        await self.join(live_messages.list_user_group(self.scope["user"].pk))
        await self.accept()

    async def investigation_status(self, message):
        if await self.still_allowed() and live_messages.meant_for(message, self.sees_all):
            await self.send_json(live_messages.status_message(message["investigation"]))


def _sees(user, investigation_id: int) -> bool:
    return Investigation.objects.visible_to(user).filter(pk=investigation_id).exists()
