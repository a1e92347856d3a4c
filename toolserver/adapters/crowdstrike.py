"""CrowdStrike Falcon for `edr-response`: network containment of a host, and lifting it.

Why not crowdstrike-falconpy: it talks through `requests` with connections of its own, which the
egress guard (toolserver.egress, inside our httpx client's network layer) never sees; the part of
the Falcon API these tools need is four calls, so the adapter speaks them itself over HttpBackend
(the guard, no redirects, the failure mapping, Retry-After).

Authentication is OAuth2 client credentials: the server's credential is the API client's *secret*;
its client ID is the parameter `client_id` (shown in the Falcon console beside the client, as a
user name is: not a secret, and an admin needs to see which client a server uses). The token

    POST {url}/oauth2/token   (form: client_id, client_secret)  -> {"access_token", "expires_in"}

is kept in the server process until a minute before it expires, and fetched again once when the
API answers 401 (a token revoked early). The calls, each with `Authorization: Bearer <token>`:

    GET  /devices/queries/devices/v1?filter=hostname:'<host>'    the host's device id (AID)
         (filter=device_id:'<id>' when the host is given as its 32-hex AID)
    GET  /devices/entities/devices/v2?ids=<aid>                   its `status`
    POST /devices/entities/devices-actions/v2?action_name=contain | lift_containment  {"ids": [aid]}

A host whose status is already `contained` or `containment_pending` is answered as already
isolated without a second action (and `normal` or `lift_containment_pending`, for a release, as
already released); already_done() reads the same status, so an abandoned write is never sent
twice. No host by that name is TargetNotFound; several (a re-imaged machine keeps its old record)
is BackendRefused, asking for the device id. Failures are HttpBackend's, named `crowdstrike_*`;
a 400's detail is the first of Falcon's `errors[].message`. This module runs in the server process
without Django.
"""

import asyncio
import re
import time

import httpx2

from toolserver import schemas
from toolserver.adapters.base import (
    BackendError,
    BackendRefused,
    CannotTell,
    EdrResponseBackend,
    Param,
    TargetNotFound,
    WriteContext,
    shaped,
)
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Isolation
from toolserver.envelope import BackendFailure

OAUTH2_PATH = "/oauth2/token"
TOKEN_MARGIN_S = 60  # a token is fetched again this long before Falcon says it expires
DEVICE_ID = re.compile(r"[0-9a-f]{32}")
CONTAINED = ("contained", "containment_pending")
RELEASED = ("normal", "lift_containment_pending")


def fql_string(value: str) -> str:
    """`value` as an FQL string literal: quoted, its backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dig(body, *keys):
    """body[k1][k2]..., or None where a level is missing or not an object."""
    for key in keys:
        body = body.get(key) if isinstance(body, dict) else None
    return body


@register("edr-response", "crowdstrike")
class CrowdStrikeEdrResponse(HttpBackend, EdrResponseBackend):
    source = "crowdstrike:hosts"
    vendor = "crowdstrike"
    params = (
        Param(
            "client_id",
            "API client ID",
            required=True,
            pattern=r"[0-9a-fA-F]{32}",
            help="the 32-character client ID of the Falcon API client (its secret is the credential).",
        ),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._token = ""
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    def auth_headers(self) -> dict[str, str]:
        return {}  # each request carries the current OAuth2 token (_response)

    def secrets(self) -> list[str]:
        return [*super().secrets(), self._token]

    # -- the token ------------------------------------------------------------------------------
    async def _access_token(self) -> str:
        async with self._token_lock:  # one fetch however many calls wait for it
            if self._token and time.monotonic() < self._token_until:
                return self._token
            form = {"client_id": self.param("client_id"), "client_secret": self._credential}
            body = self._json_object(await super()._response("POST", OAUTH2_PATH, target="token", data=form))
            token, expires_in = body.get("access_token"), body.get("expires_in", 0)
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise BackendError(BackendFailure.MALFORMED)
            self._token, self._token_until = token, time.monotonic() + max(0, expires_in - TOKEN_MARGIN_S)
            return token

    async def _response(self, method: str, path: str, *, headers=None, **kwargs) -> httpx2.Response:
        """Every API call with the token; once more with a fresh one when Falcon says 401."""
        for attempt in (1, 2):
            token = await self._access_token()
            try:
                return await super()._response(
                    method, path, headers={**(headers or {}), "Authorization": f"Bearer {token}"}, **kwargs
                )
            except BackendError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._token = ""  # revoked or expired early: fetch another
        raise AssertionError("unreachable")

    @staticmethod
    def _detail(response: httpx2.Response) -> str:
        """Falcon's refusal: `{"errors": [{"code": 400, "message": "..."}]}` (or one error object);
        whatever else the body is, HttpBackend's."""
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get("errors") if isinstance(body, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else errors
        message = first.get("message") if isinstance(first, dict) else None
        return str(message)[:300] if message else HttpBackend._detail(response)

    @staticmethod
    def _resources(body: dict) -> list:
        resources = body.get("resources")
        if not isinstance(resources, list):
            raise BackendError(BackendFailure.MALFORMED)
        return resources

    # -- the host -------------------------------------------------------------------------------
    async def _device_id(self, host: str) -> str:
        by_id = DEVICE_ID.fullmatch(host.lower()) is not None  # an AID is lower-case hex
        field, value = ("device_id", host.lower()) if by_id else ("hostname", host)
        body = await self._request(
            "GET", "/devices/queries/devices/v1", target=host, params={"filter": f"{field}:{fql_string(value)}"}
        )
        ids = self._resources(body)
        if not ids:
            raise TargetNotFound(host)
        if len(ids) > 1:
            raise BackendRefused(f"{len(ids)} Falcon hosts are named {host}; give the host's device id instead")
        if not isinstance(ids[0], str) or not DEVICE_ID.fullmatch(ids[0]):
            raise BackendError(BackendFailure.MALFORMED)
        return ids[0]

    async def _status(self, device_id: str) -> str:
        body = await self._request("GET", "/devices/entities/devices/v2", target=device_id, params={"ids": device_id})
        devices = self._resources(body)
        if not devices:
            raise TargetNotFound(device_id)
        status = devices[0].get("status") if isinstance(devices[0], dict) else None
        if not isinstance(status, str):
            raise BackendError(BackendFailure.MALFORMED)
        return status

    async def health(self) -> str:
        body = await self._request("GET", "/devices/queries/devices/v1", params={"limit": 1})
        self._resources(body)
        total = _dig(body, "meta", "pagination", "total")
        if not isinstance(total, int):
            raise BackendError(BackendFailure.MALFORMED)
        return f"the API client is valid and reads hosts ({total} in this CID)"

    # -- the writes -----------------------------------------------------------------------------
    async def isolate_host(self, args: schemas.HostAction, write: WriteContext) -> dict:
        return await self._host_action("contain", args, write)

    async def release_host(self, args: schemas.HostAction, write: WriteContext) -> dict:
        return await self._host_action("lift_containment", args, write)

    async def _host_action(self, action: str, args: schemas.HostAction, write: WriteContext) -> dict:
        device_id = await self._device_id(args.host)
        contain = action == "contain"
        if await self._status(device_id) in (CONTAINED if contain else RELEASED):
            return self._already(device_id, contain)
        body = await self._request(
            "POST",
            "/devices/entities/devices-actions/v2",
            target=args.host,
            params={"action_name": action},
            json={"ids": [device_id]},
            idempotency_key=write.idempotency_key,
        )
        acted = [item.get("id") for item in self._resources(body) if isinstance(item, dict)]
        trace_id = _dig(body, "meta", "trace_id")
        if device_id not in acted or not isinstance(trace_id, str):
            raise BackendError(BackendFailure.MALFORMED)
        return shaped(Isolation, {"host_id": device_id, "isolated": contain, "action_id": trace_id})

    @staticmethod
    def _already(device_id: str, contain: bool) -> dict:
        return shaped(
            Isolation,
            {
                "host_id": device_id,
                "isolated": contain,
                "action_id": "",
                "already_isolated": contain,
                "already_released": not contain,
            },
        )

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        """The host's containment status says whether the abandoned action took effect."""
        if tool not in ("isolate_host", "release_host"):
            raise CannotTell(tool)
        device_id = await self._device_id(args.host)
        contain = tool == "isolate_host"
        if await self._status(device_id) not in (CONTAINED if contain else RELEASED):
            return None
        return {"host_id": device_id, "isolated": contain, "action_id": "", "found_done": True}
