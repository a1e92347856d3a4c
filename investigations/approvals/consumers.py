"""The approval queue's websocket: changes of action requests as they happen.

It checks who is asking before accepting and again before each message it sends, and closes with
4403 once their access has ended (core.sockets).
"""

from channels.db import database_sync_to_async

from core.sockets import AccessCheckedConsumer, query_flag
from investigations.approvals import views as views_approvals
from investigations.approvals.services import APPROVALS_GROUP
from investigations.models import sees_any_investigation


class ApprovalsConsumer(AccessCheckedConsumer):
    """Changes of action requests, for the approval queue, the decision cards and the navigation count.

    Only users who see some investigation may listen, and each one is sent only the requests of
    investigations they may view, with their own pending count. On connect it sends a snapshot
    (the count; with `?queue=1` also the queue's requests), so a reconnect catches up.
    """

    def may_listen(self, user) -> bool:
        return sees_any_investigation(user)

    async def connect(self):
        if not await self.admit():
            return
        await self.join(APPROVALS_GROUP)
        await self.accept()
        with_requests = query_flag(self.scope.get("query_string", b""), "queue")
        await self.send_json(await database_sync_to_async(views_approvals.snapshot)(self.scope["user"], with_requests=with_requests))

    async def approvals_changed(self, message):
        if not await self.still_allowed():
            return
        entry = await database_sync_to_async(views_approvals.live_entry)(self.scope["user"], message["request"])
        if entry is not None:
            await self.send_json(entry)
