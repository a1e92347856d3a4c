"""The lab adapters: the simulated estate's HTTP API at /lab/api/ (toolserver/lab).

What is the lab's own: its paths and payloads, its health answer and its page format
({"items": [...], "total": n}). The HTTP client, the egress guard and the mapping of failures
are HttpBackend's (adapters.http); the shapes are adapters.shapes'. The lab declares no
parameters.
"""

from datetime import UTC, datetime, timedelta

from toolserver import schemas
from toolserver.adapters.base import (
    BackendError,
    CannotTell,
    EdrBackend,
    EdrResponseBackend,
    IdentityBackend,
    IntelBackend,
    Page,
    SiemBackend,
    TicketingBackend,
    WriteContext,
    page_of,
    shaped,
)
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import (
    AccountChange,
    Comment,
    Connection,
    Host,
    Indicator,
    Isolation,
    Login,
    Process,
    Shape,
    SiemEvent,
    Ticket,
    User,
)
from toolserver.envelope import BackendFailure


def _since(hours: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


class LabBackend(HttpBackend):
    """The lab's API: its health endpoint and its page format."""

    async def health(self) -> str:
        body = await self._request("GET", "/health")
        scopes = body.get("scopes")
        if body.get("status") != "ok" or not isinstance(scopes, list):
            raise BackendError(BackendFailure.MALFORMED)
        return f"the key is valid, with scopes {', '.join(map(str, scopes)) or 'none'}"

    @staticmethod
    def _page(shape: type[Shape], body: dict) -> Page:
        items, total = body.get("items"), body.get("total")
        if not isinstance(items, list) or not isinstance(total, int):
            raise BackendError(BackendFailure.MALFORMED)
        return page_of(shape, items, truncated=total > len(items))


@register("siem", "lab")
class LabSiem(LabBackend, SiemBackend):
    source = "lab:siem"

    async def search_logins(self, args: schemas.SearchLogins) -> Page:
        body = await self._request(
            "GET",
            "/siem/logins",
            params={"user": args.user, "host": args.host, "since": _since(args.lookback_hours), "limit": args.limit},
        )
        return self._page(Login, body)

    async def search_events(self, args: schemas.SearchEvents) -> Page:
        params = {
            "user": args.user,
            "host": args.host,
            "kind": args.kind,
            "since": _since(args.lookback_hours),
            "limit": args.limit,
        }
        return self._page(SiemEvent, await self._request("GET", "/siem/events", params=params))


@register("edr", "lab")
class LabEdr(LabBackend, EdrBackend):
    source = "lab:edr"

    async def get_host(self, args: schemas.GetHost) -> dict:
        return shaped(Host, await self._request("GET", f"/edr/hosts/{args.host}", target=args.host))

    async def get_process_tree(self, args: schemas.HostActivity) -> Page:
        return self._page(Process, await self._activity("processes", args))

    async def get_network_connections(self, args: schemas.HostActivity) -> Page:
        return self._page(Connection, await self._activity("connections", args))

    async def _activity(self, kind: str, args: schemas.HostActivity) -> dict:
        params = {"since": _since(args.lookback_hours), "limit": args.limit}
        return await self._request("GET", f"/edr/hosts/{args.host}/{kind}", target=args.host, params=params)


@register("edr-response", "lab")
class LabEdrResponse(LabBackend, EdrResponseBackend):
    source = "lab:edr"

    async def isolate_host(self, args: schemas.HostAction, write: WriteContext) -> dict:
        return await self._host_action("isolate", args, write)

    async def release_host(self, args: schemas.HostAction, write: WriteContext) -> dict:
        return await self._host_action("release", args, write)

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        if tool not in ("isolate_host", "release_host"):
            raise CannotTell(tool)
        host = await self._request("GET", f"/edr/hosts/{args.host}/isolation", target=args.host)
        isolated = tool == "isolate_host"
        if not isinstance(host.get("isolated"), bool) or not isinstance(host.get("host_id"), str):
            raise BackendError(BackendFailure.MALFORMED)
        if host["isolated"] != isolated:
            return None
        return {"host_id": host["host_id"], "isolated": isolated, "action_id": "", "found_done": True}

    async def _host_action(self, action: str, args: schemas.HostAction, write: WriteContext) -> dict:
        body = await self._write(f"/edr/hosts/{args.host}/{action}", {"reason": args.reason}, write, target=args.host)
        return shaped(Isolation, body)


@register("identity", "lab")
class LabIdentity(LabBackend, IdentityBackend):
    source = "lab:identity"

    async def get_user(self, args: schemas.GetUser) -> dict:
        return shaped(User, await self._request("GET", f"/identity/users/{args.username}", target=args.username))

    async def disable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return await self._account_action("disable", args, write)

    async def enable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return await self._account_action("enable", args, write)

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        if tool not in ("disable_account", "enable_account"):
            raise CannotTell(tool)
        user = shaped(User, await self._request("GET", f"/identity/users/{args.username}", target=args.username))
        disabled = tool == "disable_account"
        if user["disabled"] != disabled:
            return None
        return {
            "username": user["username"],
            "disabled": disabled,
            "already": True,
            "action_id": "",
            "found_done": True,
        }

    async def _account_action(self, action: str, args: schemas.AccountAction, write: WriteContext) -> dict:
        path = f"/identity/users/{args.username}/{action}"
        return shaped(AccountChange, await self._write(path, {"reason": args.reason}, write, target=args.username))


@register("ticketing", "lab")
class LabTicketing(LabBackend, TicketingBackend):
    source = "lab:ticketing"

    async def open_ticket(self, args: schemas.OpenTicket, write: WriteContext) -> dict:
        payload = {"title": args.title, "body": args.body, "severity": args.severity, "alert_ref": write.trigger}
        return shaped(Ticket, await self._write("/tickets", payload, write, target="ticket"))

    async def add_comment(self, args: schemas.AddComment, write: WriteContext) -> dict:
        path = f"/tickets/{args.ticket_id}/comments"
        return shaped(Comment, await self._write(path, {"body": args.body}, write, target=f"ticket {args.ticket_id}"))

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        """The ticket (or comment) carries the write's idempotency key: found, the write happened."""
        if tool not in ("open_ticket", "add_comment"):
            raise CannotTell(tool)
        body = await self._request("GET", "/tickets/search", params={"idempotency_key": write.idempotency_key})
        found = body.get("tickets" if tool == "open_ticket" else "comments")
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise BackendError(BackendFailure.MALFORMED)
        if not found:
            return None
        return {**shaped(Ticket if tool == "open_ticket" else Comment, found[0]), "found_done": True}


@register("intel", "lab")
class LabIntel(LabBackend, IntelBackend):
    source = "lab:intel"

    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict:
        body = await self._request("GET", "/intel/lookup", params={"kind": args.kind, "value": args.value})
        return shaped(Indicator, body)
