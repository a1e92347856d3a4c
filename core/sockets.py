"""Who may keep a websocket open, and which origin may open one.

A socket's access is checked at connect and again before each message it sends (re-read from
the database through the user's session at most every SOCKET_RECHECK_SECONDS); once it has
ended the socket closes with 4403 and sends nothing more. So that the end does not wait for
the next message, every socket joins its user's group, and console.signals tells that group
of a sign-out, a deactivation, or a role or grant change (on commit): the sockets re-check at once.
"""

import logging
import re
import time
from importlib import import_module
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.core.exceptions import DisallowedHost
from django.db import transaction
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.module_loading import import_string
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from core import live

log = logging.getLogger(__name__)

ACCESS_ENDED = 4403  # the close code of a socket whose user may no longer listen


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def session_tag(session_key: str) -> str:
    """Names a session in channel-layer messages without putting the session key itself in Redis."""
    return salted_hmac("gatehouse.sockets.session", session_key).hexdigest()


def session_user(session_key: str | None):
    """The user signed in with this session now, or None: signed out, expired, deleted, deactivated
    (the backends refuse inactive users) or the password changed since (the session's hash)."""
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:  # an ended or expired session loads empty
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    idle_until = session.get(IDLE_UNTIL)
    if idle_until is not None and time.time() > idle_until and _judged(session_key, "SIGNED_OUT_WHEN_IDLE", user):
        return None  # idle past the console's timeout: its next page would sign it out
    return user if second_factor_given(session, user, session_key) else None


# When a session becomes idle, as of its last request (console.middleware.IdleTimeout): written by the
# console, read here, so that a socket of someone the console signs out when idle (judged now, by
# settings.SIGNED_OUT_WHEN_IDLE: made an approver since the last page counts) sends nothing past it,
# as their next page would be a sign-in.
IDLE_UNTIL = "gatehouse_idle_until"


# What the console's second-factor gate last decided for a session (console.mfa.gate): "step_up" (its
# person has a factor it has not given), "second_factor" (must enrol one first) or "" (nothing owed).
SECOND_FACTOR_OWED = "gatehouse_second_factor_owed"


# How long the gate's kept decision holds before it is asked again (the pages and the sockets alike):
# a person made an approver since owes a factor within it, whether or not their session loads a page.
OWED_KEPT_S = 60


def second_factor_given(session, user, session_key: str) -> bool:
    """A person who has a second factor, or must have one, counts as signed in only once this session
    has given it (django-otp's session key, set by the sign-in's second step): a password alone opens no
    socket, as it opens no page. What is owed is the console's decision (settings.SECOND_FACTOR_OWED_BY,
    named so that this package does not import the console), kept in the session by its gate for
    OWED_KEPT_S and asked again here once older."""
    device_id = session.get(DEVICE_ID_SESSION_KEY)
    if device_id:
        device = Device.from_persistent_id(device_id)
        return device is not None and device.user_id == user.pk
    owed = session.get(SECOND_FACTOR_OWED)
    if owed is not None and time.time() - owed["at"] < OWED_KEPT_S:
        return not owed["state"]
    return not _judged(session_key, "SECOND_FACTOR_OWED_BY", user)


# The console's judgements a socket asked for, per session, kept for OWED_KEPT_S as the pages keep theirs:
# a socket re-checks every few seconds, and each judgement reads the devices, roles and grants.
_JUDGED: dict[tuple[str, str, int], tuple[float, object]] = {}
_JUDGED_MAX = 10_000  # past this many, the expired ones are dropped


def _judged(session_key: str, setting: str, user):
    """What the console function settings.<setting> says of `user`, asked at most once per OWED_KEPT_S
    for this session (named by the setting: this package does not import the console)."""
    now, key = time.monotonic(), (setting, session_key, user.pk)
    kept = _JUDGED.get(key)
    if kept is not None and now - kept[0] < OWED_KEPT_S:
        return kept[1]
    if len(_JUDGED) >= _JUDGED_MAX:
        for stale in [old for old, (at, _) in _JUDGED.items() if now - at >= OWED_KEPT_S]:
            del _JUDGED[stale]
    value = import_string(getattr(settings, setting))(user)
    _JUDGED[key] = (now, value)
    return value


def tell_sockets_of(user_ids, *, signed_out_session: str | None = None) -> None:
    """After the commit, make these users' open sockets re-check their access (and close the
    sockets of a signed-out session: its row may not be gone yet when they hear of it)."""
    ids = sorted({pk for pk in user_ids if pk is not None})
    if not ids:
        return
    message = {"type": "access.changed"}
    if signed_out_session:
        message["signed_out"] = session_tag(signed_out_session)

    def send():
        try:
            live.group_send(*[(user_group(pk), message) for pk in ids])
        except Exception:  # each socket still re-checks before its next message
            log.warning("could not tell the sockets of users %s that their access changed", ids, exc_info=True)

    transaction.on_commit(send)


class AccessCheckedConsumer(AsyncJsonWebsocketConsumer):
    """A socket that ends with its user's access.

    Subclasses say who may listen in `may_listen` (called in a thread with the user as read
    now), call `admit()` first in connect, and send only after `still_allowed()`.
    """

    ended = False
    checked_at = float("-inf")
    session_key: str | None = None

    def may_listen(self, user) -> bool:
        raise NotImplementedError

    async def admit(self) -> bool:
        """Whether who is asking may listen; if not, the handshake is refused. Their user group is
        joined before the check, so a change that lands during it still reaches this socket."""
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return False
        self.session_key = self.scope["session"].session_key
        await self.join(user_group(user.pk))
        return await self.still_allowed(force=True)

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)  # left by channels' websocket_disconnect

    async def still_allowed(self, *, force: bool = False) -> bool:
        """Whether this socket may still send; closes it with 4403 the first time the answer is no."""
        if self.ended:
            return False
        started = time.monotonic()
        if force or started - self.checked_at >= settings.SOCKET_RECHECK_SECONDS:
            user = await database_sync_to_async(self._current_user)()
            if user is None:
                await self.end()
                return False
            self.scope["user"], self.checked_at = user, started  # later filtering uses the fresh permissions
        return True

    def _current_user(self):
        user = session_user(self.session_key)
        return user if user is not None and self.may_listen(user) else None

    async def end(self) -> None:
        self.ended = True
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.close(code=ACCESS_ENDED)  # before accept, this refuses the handshake

    async def access_changed(self, message):
        if self.ended:
            return
        if self.session_key and message.get("signed_out") == session_tag(self.session_key):
            await self.end()
        else:
            await self.still_allowed(force=True)

    async def receive_json(self, content, **kwargs):
        pass  # viewers only listen; decisions are posted to the views


# The origin check. channels' AllowedHostsOriginValidator compares host names only, against
# ALLOWED_HOSTS: any port of the console's host (another, less trusted site on it) and even
# `http://127.0.0.1:8831.evil.example` could open a socket with the user's cookie.

_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[a-f0-9:.]+\])(?::([0-9]{1,5}))?", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialized origin; None for anything else (a path, user info,
    "null", a port that is not a number)."""
    match = _ORIGIN.fullmatch(value)
    if match is None:
        return None
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    port = int(port) if port else _DEFAULT_PORTS[scheme]
    return (scheme, host, port) if 0 < port < 65536 else None


class _Handshake(HttpRequest):
    """The handshake read as Django reads a page's request: get_host() checks ALLOWED_HOSTS, and the scheme
    is the connection's (uvicorn's, from a trusted proxy's X-Forwarded-Proto), so a socket trusts what the
    pages' CSRF check trusts."""

    def __init__(self, scope):
        super().__init__()
        self._connection_scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        for name, value in scope.get("headers", []):
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            value = value.decode("latin-1")
            self.META[key] = f"{self.META[key]},{value}" if key in self.META else value  # two Hosts are no host
        if scope.get("server"):
            self.META["SERVER_NAME"], self.META["SERVER_PORT"] = str(scope["server"][0]), str(scope["server"][1])

    def _get_scheme(self):
        return self._connection_scheme


def own_origin(scope) -> tuple[str, str, int] | None:
    request = _Handshake(scope)
    try:
        host = request.get_host()
    except (DisallowedHost, KeyError):  # KeyError: neither a Host header nor a server address
        return None
    return parse_origin(f"{request.scheme}://{host}")


def trusted_origin(scope) -> bool:
    """The Origin header (exactly one) is the console's own, or one of CSRF_TRUSTED_ORIGINS (exact
    entries only: a wildcard entry is not an origin and trusts nothing here)."""
    values = [value for name, value in scope.get("headers", []) if name == b"origin"]
    if len(values) != 1:
        return False
    origin = parse_origin(values[0].decode("latin-1"))
    if origin is None:
        return False
    return origin == own_origin(scope) or origin in {parse_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS}


class SameOriginValidator:
    """Wraps the websocket application (console.asgi): a handshake from any other origin is refused."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and trusted_origin(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def query_flag(query_string: bytes, name: str) -> bool:
    return parse_qs(query_string.decode("latin-1")).get(name, [""])[0] == "1"


def query_number(query_string: bytes, name: str) -> int | None:
    """The query's `name` as a whole number a database may hold (below 2**63: SQLite refuses a larger
    one with an error); None when it is missing or anything else."""
    value = parse_qs(query_string.decode("latin-1")).get(name, [""])[0]
    # At most 19 digits before int(): Python refuses to convert more than 4,300 with an error.
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        return None
    number = int(value)
    return number if number < 2**63 else None
