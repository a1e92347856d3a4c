"""The signed-webhook channel: a generic chat bridge, both ways, signed like Slack's v0 scheme.

Every message either way carries `X-Gatehouse-Timestamp` (Unix seconds) and
`X-Gatehouse-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>" keyed with the secret>`,
the secret being GATEHOUSE_APPROVAL_WEBHOOK_SECRET (one per channel, 32+ characters).

- Out: when GATEHOUSE_APPROVAL_WEBHOOK_URL is set, each new request waiting, each decision and each
  outcome is POSTed there as JSON `{"delivery", "kind", "request": <the request's summary>, "url"}`, the
  delivery's id also in `X-Gatehouse-Delivery`: a retry of a delivery whose answer was lost carries the
  same id, for the receiver to deduplicate. A send ends after SEND_DEADLINE_S whatever the receiver does,
  well inside the delivery's claim. A redirect is not followed: a 3xx answer is a failed delivery.
- In: POST /channels/webhook/callback with JSON `{"user", "request", "decision": "approve"|"reject",
  "reason"}`. The signature is checked over the raw body before anything in it is read, a timestamp
  older (or newer) than GATEHOUSE_APPROVAL_WEBHOOK_MAX_AGE_S is refused (no replays after that), and
  `user`, the platform's user id, must be linked to a Gatehouse user in GATEHOUSE_APPROVAL_WEBHOOK_USERS.

The secret is compared in constant time and never logged, shown, audited or put in an exception.
"""

import contextlib
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from investigations.approvals.channels.base import (
    Change,
    DeliveryFailed,
    Identity,
    InboundChannel,
    Kind,
    OutboundChannel,
    Refused,
    register,
)

TIMESTAMP_HEADER = "X-Gatehouse-Timestamp"
SIGNATURE_HEADER = "X-Gatehouse-Signature"
DELIVERY_HEADER = "X-Gatehouse-Delivery"
VERSION = "v0"
REASON_MAX = 1000
SEND_TIMEOUT_S = 5  # each connect, write and read
SEND_DEADLINE_S = 30  # the whole send: well inside the delivery's claim (deliveries.CLAIM_S)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is not followed: urllib would turn the POST into a GET, with the signature headers, to any
    address the receiver names (a metadata service, a port on loopback). It fails the delivery instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Deadline:
    """Shuts a send's connection down when its time is up. A socket timeout bounds each read, not the
    send: a receiver trickling its answer a byte at a time held the send past the delivery's claim,
    and the next sweep sent the delivery again."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.passed = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def connect(self, address, timeout: float, source_address=None) -> socket.socket:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock = socket.create_connection(address, min(timeout, left), source_address)
        with self._lock:
            # A duplicate of the descriptor, because TLS takes the socket over; shutting it ends the reads
            # of whatever wraps the socket.
            self._watched.append(sock.dup())
            if self._timer is None:
                self._timer = threading.Timer(left, self._expire)
                self._timer.daemon = True
                self._timer.start()
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._watched:
                with contextlib.suppress(OSError):  # the receiver may have closed it already
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            for sock in self._watched:
                sock.close()
            self._watched.clear()


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_connecting(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        # A context of our own (certificates and host name checked), passed on as the only TLS argument:
        # Python 3.12 took `check_hostname` out of urllib's handler and http.client's connection.
        self.tls = ssl.create_default_context()
        super().__init__(context=self.tls)
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(_connecting(http.client.HTTPSConnection, self.deadline), req, context=self.tls)


def _connecting(connection_class, deadline: _Deadline):
    """The connection class, its sockets made by the deadline (http.client's own hook for it)."""

    def connection(*args, **kwargs):
        made = connection_class(*args, **kwargs)
        made._create_connection = deadline.connect
        return made

    return connection


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for this body at this time."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


@register
class WebhookChannel(OutboundChannel, InboundChannel):
    name = "webhook"

    def __init__(self):
        self.url = settings.APPROVAL_WEBHOOK_URL
        self.wants = frozenset({Kind.WAITING, Kind.DECIDED, Kind.FINISHED}) if self.url else frozenset()

    # -- out ------------------------------------------------------------------------------------
    def notify(self, change: Change) -> None:
        from investigations.approvals.services import summary

        request = change.request
        body = json.dumps(
            {
                "delivery": change.delivery_id,  # the same on a retry: a receiver deduplicates by it
                "kind": str(change.kind),
                "request": summary(request),
                "url": f"{settings.CONSOLE_URL}/approvals/{request.pk}/",
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(change.delivery_id),
            **signed_headers(settings.APPROVAL_WEBHOOK_SECRET, body),
        }
        post = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked in settings
        deadline = _Deadline(SEND_DEADLINE_S)
        opener = urllib.request.build_opener(_NoRedirects, _HTTPHandler(deadline), _HTTPSHandler(deadline))
        try:
            with opener.open(post, timeout=SEND_TIMEOUT_S) as answer:
                answer.read(1024)
            if deadline.passed:  # a cut-off answer can read as a whole one (its headers end at the EOF)
                raise DeliveryFailed(f"no answer within {SEND_DEADLINE_S} s")
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if deadline.passed:
                raise DeliveryFailed(f"no answer within {SEND_DEADLINE_S} s") from None
            # The URL's text may hold a token: the type only.
            cause = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, Exception) else exc
            raise DeliveryFailed(type(cause).__name__) from None
        finally:
            deadline.close()

    # -- in -------------------------------------------------------------------------------------
    def authenticate(self, request: HttpRequest) -> Identity:
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not (timestamp.isascii() and timestamp.isdigit()) or not signature:
            raise Refused("The callback is not signed.")
        if abs(time.time() - int(timestamp)) > settings.APPROVAL_WEBHOOK_MAX_AGE_S:
            raise Refused("The callback's timestamp is too old or too far ahead.")
        if not hmac.compare_digest(
            sign(settings.APPROVAL_WEBHOOK_SECRET, timestamp, request.body).encode(), signature.encode()
        ):
            raise Refused("The callback's signature does not match.")
        # Signed by the platform: only now is the body read.
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise Refused("The callback's body is not JSON.", 400) from None
        if not isinstance(data, dict):
            raise Refused("The callback's body is not a JSON object.", 400)
        user, request_id, decision, reason = (
            data.get("user"),
            data.get("request"),
            data.get("decision"),
            data.get("reason", ""),
        )
        if not isinstance(user, str) or not user or len(user) > 200:
            raise Refused("`user` must be the platform's user id.", 400)
        if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 1:
            raise Refused("`request` must be an action request's id.", 400)
        if decision not in ("approve", "reject"):
            raise Refused("`decision` must be approve or reject.", 400)
        if not isinstance(reason, str) or len(reason) > REASON_MAX or "\x00" in reason:
            raise Refused(f"`reason` must be text of at most {REASON_MAX} characters.", 400)
        return Identity(platform_user=user, request_id=request_id, decision=decision, reason=reason.strip())

    def user_for(self, identity: Identity):
        username = settings.APPROVAL_WEBHOOK_USERS.get(identity.platform_user)
        if not username:
            return None
        return get_user_model().objects.filter(username=username, is_active=True).first()
