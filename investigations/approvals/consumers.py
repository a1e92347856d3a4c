"""The approval queue's websocket: changes of action requests as they happen.

It checks who is asking before accepting and again before each message it sends, and closes with
4403 once their access has ended (core.sockets). What it sends is live_messages' schemas only.
"""

from channels.db import database_sync_to_async

from core.sockets import AccessCheckedConsumer, query_flag, query_number
from investigations import live_messages
from investigations.approvals import live
from investigations.approvals.services import approvable_tools
from investigations.models import sees_any_investigation, sees_every_investigation


class ApprovalsConsumer(AccessCheckedConsumer):
    """Changes of action requests, for the approval queue, the decision cards and the navigation count.

    Only users who see some investigation may listen. The publisher (approvals/live.py) chose who
    hears of each change and counted their pending requests; this socket hears both the group of
    those who see all and its user's own group, and sends on what is meant for its user as last
    checked (live_messages.meant_for), with the card's variant for the tools they may approve then:
    nothing is queried per change. On connect it sends a snapshot: the count, and the requests the
    page shows as they are now (`?queue=1` the queue's, `?investigation=<id>` an investigation's,
    `?request=<id>` that one), so a page catches up on what was made or changed while it was not
    listening: between its render and the socket's open, or during a drop.
    """

    sees_all = False
    approvable: frozenset[str] = frozenset()

    def may_listen(self, user) -> bool:
        self.sees_all = sees_every_investigation(user)
        if not sees_any_investigation(user):
            return False
        self.approvable = frozenset(approvable_tools(user))
        return True

    async def connect(self):
        if not await self.admit():
            return
        await self.join(live_messages.APPROVALS_ALL)
        await self.join(live_messages.approvals_user_group(self.scope["user"].pk))
        await self.accept()
        query = self.scope.get("query_string", b"")
        shown = live.Shown(
            queue=query_flag(query, "queue"),
            investigation=query_number(query, "investigation"),
            request=query_number(query, "request"),
        )
        await self.send_json(await database_sync_to_async(live.snapshot)(self.scope["user"], self.approvable, shown))

    async def approvals_changed(self, message):
        if not await self.still_allowed() or not live_messages.meant_for(message, self.sees_all):
            return
        summary = message["request"]
        card = live_messages.card_for(message["cards"], summary["tool"], self.approvable)
        await self.send_json(live_messages.request_message(summary, card, message["pending"]))
