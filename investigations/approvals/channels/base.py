"""Approval channels: the interfaces a channel implements, and the registry of the enabled ones.

A channel is a way people hear of action requests and, for a chat platform, answer them.

- Outbound (`OutboundChannel`): `notify(change)` tells of one change of one request. Each channel
  says which kinds of change it `wants`; the gate announces every change once its transaction
  commits, the sweep announces overdue ones, and every delivery is recorded per channel and
  request (`ChannelDelivery`, investigations/approvals/channels/deliveries.py): sent only once
  the channel said it left, retried with backoff when it failed.
- Inbound (`InboundChannel`): a platform's callback is authenticated (`authenticate`: the
  platform's signature, checked before the body is read), its user mapped to a Gatehouse user
  (`user_for`), and its decision taken by the SAME `approve`/`reject` as the pages and the API
  (investigations/approvals/channels/views.py): the permission check, the expiry and the audit
  record (which names the channel) are theirs, nothing skips them (architecture rules 9 and 12).

A channel registers itself with `@register`; `settings.APPROVAL_CHANNELS` names the enabled ones
(`GATEHOUSE_APPROVAL_CHANNELS`). A channel's secrets come from settings and never reach a log, a
page, an audit record or an exception's text (architecture rule 2).
"""

import enum
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from investigations.models import ActionRequest


class Kind(enum.StrEnum):
    """The changes of a request a channel may be told of."""

    WAITING = "waiting"  # a new request waits for a decision
    OVERDUE = "overdue"  # still waiting after APPROVAL_NOTIFY_AFTER_S
    DECIDED = "decided"  # no longer waiting: approved, rejected, expired or cancelled
    FINISHED = "finished"  # carried out: succeeded or failed


@dataclass(frozen=True)
class Change:
    """One change of one request, as a channel is told of it (the request as it is now)."""

    request: ActionRequest
    kind: Kind
    delivery_id: int  # the ChannelDelivery telling it: the same on every retry, for a receiver to deduplicate


class DeliveryFailed(Exception):
    """The channel could not send now; try again later. The message is one line and holds no secret
    (a type name or a status, never the text of a library's exception, which may quote a password)."""


class Undeliverable(Exception):
    """There is nothing to send and nobody to send it to (no approver has an address): not retried."""


class OutboundChannel:
    """Tells people of request changes. `notify` returns once the message left, or raises
    DeliveryFailed (retried later) or Undeliverable (not retried)."""

    name: str = ""
    wants: frozenset[Kind] = frozenset()

    def notify(self, change: Change) -> None:
        raise NotImplementedError


class Refused(Exception):
    """An inbound callback refused; `status` is the HTTP status it is answered with. The message says
    what was wrong in general terms only (never the expected signature or the secret)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Who the platform says is asking (its own user id), and the decision its verified body carries."""

    platform_user: str
    request_id: int
    decision: str  # "approve" | "reject"
    reason: str = ""


class InboundChannel:
    """Takes decisions from a platform's callbacks (investigations/approvals/channels/views.py)."""

    name: str = ""

    def authenticate(self, request: HttpRequest) -> Identity:
        """The platform's identity and decision, if the callback is really the platform's (its signature
        over the raw body, checked before the body is parsed); else raise Refused."""
        raise NotImplementedError

    def user_for(self, identity: Identity):
        """The Gatehouse user the platform's user is linked to, or None."""
        raise NotImplementedError


OUTBOUND: dict[str, type[OutboundChannel]] = {}
INBOUND: dict[str, type[InboundChannel]] = {}


def register(cls):
    """Register a channel class under its `name` as outbound, inbound or both."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if issubclass(cls, OutboundChannel):
        OUTBOUND[cls.name] = cls
    if issubclass(cls, InboundChannel):
        INBOUND[cls.name] = cls
    return cls


def _load() -> None:
    """Import the channel modules, so that each has registered itself."""
    from investigations.approvals.channels import email, webhook  # noqa: F401


def _enabled_names() -> list[str]:
    _load()
    names = list(settings.APPROVAL_CHANNELS)
    unknown = [name for name in names if name not in OUTBOUND and name not in INBOUND]
    if unknown:
        raise ImproperlyConfigured(
            f"GATEHOUSE_APPROVAL_CHANNELS names no channel called {', '.join(unknown)} "
            f"(known: {', '.join(sorted(OUTBOUND.keys() | INBOUND.keys()))})"
        )
    return names


def outbound() -> list[OutboundChannel]:
    """The enabled channels that tell people of changes."""
    return [OUTBOUND[name]() for name in _enabled_names() if name in OUTBOUND]


def inbound(name: str) -> InboundChannel | None:
    """The enabled channel of that name that takes decisions, or None."""
    return INBOUND[name]() if name in _enabled_names() and name in INBOUND else None
