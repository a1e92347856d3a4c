"""Websockets of investigations: one investigation's transcript, the list's status changes, and
the approval queue's changes.

Each checks who is asking before accepting (a refused handshake is a 403) and again before each
message it sends, and closes with 4403 once their access has ended (console.sockets); foreign
origins are refused before this by console.asgi's SameOriginValidator.
"""

from channels.db import database_sync_to_async

from console.sockets import AccessCheckedConsumer
from investigations import selectors, views_approvals
from investigations.actions import APPROVALS_GROUP
from investigations.events import LIST_GROUP, group_name


class InvestigationConsumer(AccessCheckedConsumer):
    """Sends the events after `?after=<seq>` (the backlog), then each new one as it is saved.

    It joins the group before reading the backlog, so nothing published in between is missed;
    an event that arrives both ways is sent once, in seq order.
    """

    def may_listen(self, user) -> bool:
        return selectors.can_view_id(user, self.investigation_id)

    async def connect(self):
        self.investigation_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if not await self.admit():
            return
        self.last_seq = _after(self.scope.get("query_string", b""))
        await self.join(group_name(self.investigation_id))
        await self.accept()
        for event in await database_sync_to_async(selectors.events_after)(self.investigation_id, self.last_seq):
            await self._send_event(event)

    async def investigation_event(self, message):
        await self._send_event(message["event"])

    async def _send_event(self, event: dict):
        if event["seq"] <= self.last_seq or not await self.still_allowed():
            return
        self.last_seq = event["seq"]
        await self.send_json({"type": "event", "event": event})


class InvestigationListConsumer(AccessCheckedConsumer):
    """Status changes for the investigations list, filtered to what the user may see."""

    def may_listen(self, user) -> bool:
        self.sees_all = selectors.sees_all_investigations(user)
        return True  # any signed-in user has the list; what it is sent is filtered

    async def connect(self):
        if not await self.admit():
            return
        await self.join(LIST_GROUP)
        await self.accept()

    async def investigation_status(self, message):
        entry = message["investigation"]
        if not await self.still_allowed():
            return
        if self.sees_all or await database_sync_to_async(selectors.can_view_id)(self.scope["user"], entry["id"]):
            await self.send_json({"type": "status", "investigation": entry})


class ApprovalsConsumer(AccessCheckedConsumer):
    """Changes of action requests, for the approval queue, the decision cards and the navigation count.

    Only users who see some investigation may listen, and each one is sent only the requests of
    investigations they may view, with their own pending count. On connect it sends a snapshot
    (the count; with `?queue=1` also the queue's requests), so a reconnect catches up.
    """

    def may_listen(self, user) -> bool:
        self.sees_all = selectors.sees_all_investigations(user)
        return self.sees_all or views_approvals.sees_any_investigation(user)

    async def connect(self):
        if not await self.admit():
            return
        await self.join(APPROVALS_GROUP)
        await self.accept()
        with_requests = _flag(self.scope.get("query_string", b""), "queue")
        await self.send_json(await database_sync_to_async(views_approvals.snapshot)(self.scope["user"], with_requests=with_requests))

    async def approvals_changed(self, message):
        if not await self.still_allowed():
            return
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
