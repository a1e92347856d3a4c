"""The lab adapters: the simulated estate's HTTP API at /lab/api/ (toolserver/lab)."""

from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from toolserver import egress, schemas
from toolserver.adapters.base import (
    BackendError,
    BackendRefused,
    CannotTell,
    EdrBackend,
    EdrResponseBackend,
    IdentityBackend,
    IntelBackend,
    Page,
    SiemBackend,
    TargetNotFound,
    TicketingBackend,
    WriteContext,
)
from toolserver.envelope import BackendFailure


# The shapes we accept from the lab; anything else is a malformed payload. Unknown keys are
# dropped, so what reaches the model is always our shape, never the backend's raw payload.
class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Login(_Shape):
    at: str
    user: str
    host: str
    source_ip: str
    source_country: str
    result: Literal["success", "failure"]
    method: str


class Event(_Shape):
    at: str
    kind: str
    host: str | None
    user: str | None
    summary: str


class Host(_Shape):
    host_id: str
    hostname: str
    os: str
    role: str
    owner: str | None
    ip: str
    criticality: str
    isolated: bool
    last_seen: str | None


class Process(_Shape):
    at: str
    pid: int
    ppid: int
    image: str
    command_line: str
    user: str | None
    sha256: str | None


class Connection(_Shape):
    at: str
    pid: int
    image: str
    remote_ip: str
    remote_domain: str | None
    remote_port: int
    bytes_out: int


class User(_Shape):
    username: str
    display_name: str
    email: str
    department: str
    title: str
    privileged: bool
    disabled: bool
    mfa: bool
    last_login: str | None


class Isolation(_Shape):
    host_id: str
    isolated: bool
    action_id: str
    already_isolated: bool = False
    already_released: bool = False


class AccountChange(_Shape):
    username: str
    disabled: bool
    already: bool
    action_id: str


class Ticket(_Shape):
    ticket_id: str
    url: str


class Comment(_Shape):
    ticket_id: str
    comment_id: str


class Indicator(_Shape):
    kind: str
    value: str
    verdict: Literal["malicious", "suspicious", "benign", "unknown"]
    confidence: int
    tags: list[str]
    first_seen: str | None
    source: str


def _since(hours: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


class LabHttp:
    """HTTP to the lab, with every failure mapped to the typed failures of adapters.base."""

    source: str

    def __init__(self, *, url: str, credential: str, timeout_s: float):
        super().__init__(url=url, credential=credential, timeout_s=timeout_s)
        self._http = egress.http_client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {credential}"},
            timeout=timeout_s,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, target: str = "", params=None, json=None, idempotency_key: str = ""
    ) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = await self._http.request(method, path, params=params, json=json, headers=headers)
        except httpx2.TimeoutException:
            raise BackendError(BackendFailure.TIMEOUT) from None
        except httpx2.TransportError:
            raise BackendError(BackendFailure.UNAVAILABLE) from None
        status = response.status_code
        if status == 404:
            raise TargetNotFound(target or path)
        if status in (400, 409):  # 409: the backend saw this idempotency key for another action
            raise BackendRefused(self._detail(response))
        if status in (401, 403):
            raise BackendError(BackendFailure.FORBIDDEN, status=status)
        if status == 429:
            raise BackendError(BackendFailure.RATE_LIMITED, status=status, retry_after_s=self._retry_after(response))
        if status == 504:
            raise BackendError(BackendFailure.TIMEOUT, status=status)
        if status >= 500:
            raise BackendError(BackendFailure.UNAVAILABLE, status=status)
        try:
            body = response.json()
        except ValueError:
            raise BackendError(BackendFailure.MALFORMED, status=status) from None
        if not isinstance(body, dict):
            raise BackendError(BackendFailure.MALFORMED, status=status)
        return body

    async def health(self) -> str:
        body = await self._request("GET", "/health")
        scopes = body.get("scopes")
        if body.get("status") != "ok" or not isinstance(scopes, list):
            raise BackendError(BackendFailure.MALFORMED)
        return f"the key is valid, with scopes {', '.join(map(str, scopes)) or 'none'}"

    async def _write(self, path: str, payload: dict, write: WriteContext, *, target: str) -> dict:
        """A privileged write, carrying its idempotency key so the backend deduplicates too."""
        return await self._request("POST", path, target=target, json=payload, idempotency_key=write.idempotency_key)

    @staticmethod
    def _retry_after(response: httpx2.Response) -> int:
        try:
            return max(1, int(response.headers.get("Retry-After", "30")))
        except ValueError:
            return 30

    @staticmethod
    def _detail(response: httpx2.Response) -> str:
        try:
            return str(response.json().get("detail", "the backend refused the request"))[:300]
        except (ValueError, AttributeError):
            return "the backend refused the request"

    @staticmethod
    def _shape(shape: type[_Shape], body: dict) -> dict:
        try:
            return shape.model_validate(body).model_dump()
        except ValidationError:
            raise BackendError(BackendFailure.MALFORMED) from None

    @classmethod
    def _page(cls, shape: type[_Shape], body: dict) -> Page:
        items, total = body.get("items"), body.get("total")
        if not isinstance(items, list) or not isinstance(total, int):
            raise BackendError(BackendFailure.MALFORMED)
        shaped = [cls._shape(shape, item) if isinstance(item, dict) else cls._shape(shape, {}) for item in items]
        return Page(items=shaped, truncated=total > len(shaped))


class LabSiem(LabHttp, SiemBackend):
    source = "lab:siem"

    async def search_logins(self, args: schemas.SearchLogins) -> Page:
        body = await self._request(
            "GET",
            "/siem/logins",
            params={"user": args.user, "host": args.host, "since": _since(args.lookback_hours), "limit": args.limit},
        )
        return self._page(Login, body)

    async def search_events(self, args: schemas.SearchEvents) -> Page:
        params = {"user": args.user, "host": args.host, "kind": args.kind, "since": _since(args.lookback_hours), "limit": args.limit}
        return self._page(Event, await self._request("GET", "/siem/events", params=params))


class LabEdr(LabHttp, EdrBackend):
    source = "lab:edr"

    async def get_host(self, args: schemas.GetHost) -> dict:
        return self._shape(Host, await self._request("GET", f"/edr/hosts/{args.host}", target=args.host))

    async def get_process_tree(self, args: schemas.HostActivity) -> Page:
        return self._page(Process, await self._activity("processes", args))

    async def get_network_connections(self, args: schemas.HostActivity) -> Page:
        return self._page(Connection, await self._activity("connections", args))

    async def _activity(self, kind: str, args: schemas.HostActivity) -> dict:
        params = {"since": _since(args.lookback_hours), "limit": args.limit}
        return await self._request("GET", f"/edr/hosts/{args.host}/{kind}", target=args.host, params=params)


class LabEdrResponse(LabHttp, EdrResponseBackend):
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
        return self._shape(Isolation, body)


class LabIdentity(LabHttp, IdentityBackend):
    source = "lab:identity"

    async def get_user(self, args: schemas.GetUser) -> dict:
        return self._shape(User, await self._request("GET", f"/identity/users/{args.username}", target=args.username))

    async def disable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return await self._account_action("disable", args, write)

    async def enable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return await self._account_action("enable", args, write)

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        if tool not in ("disable_account", "enable_account"):
            raise CannotTell(tool)
        user = self._shape(User, await self._request("GET", f"/identity/users/{args.username}", target=args.username))
        disabled = tool == "disable_account"
        if user["disabled"] != disabled:
            return None
        return {"username": user["username"], "disabled": disabled, "already": True, "action_id": "", "found_done": True}

    async def _account_action(self, action: str, args: schemas.AccountAction, write: WriteContext) -> dict:
        path = f"/identity/users/{args.username}/{action}"
        return self._shape(AccountChange, await self._write(path, {"reason": args.reason}, write, target=args.username))


class LabTicketing(LabHttp, TicketingBackend):
    source = "lab:ticketing"

    async def open_ticket(self, args: schemas.OpenTicket, write: WriteContext) -> dict:
        payload = {"title": args.title, "body": args.body, "severity": args.severity, "alert_ref": write.trigger}
        return self._shape(Ticket, await self._write("/tickets", payload, write, target="ticket"))

    async def add_comment(self, args: schemas.AddComment, write: WriteContext) -> dict:
        path = f"/tickets/{args.ticket_id}/comments"
        return self._shape(Comment, await self._write(path, {"body": args.body}, write, target=f"ticket {args.ticket_id}"))

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
        return {**self._shape(Ticket if tool == "open_ticket" else Comment, found[0]), "found_done": True}


class LabIntel(LabHttp, IntelBackend):
    source = "lab:intel"

    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict:
        body = await self._request("GET", "/intel/lookup", params={"kind": args.kind, "value": args.value})
        return self._shape(Indicator, body)
