"""Reads of the lab: what the SIEM, EDR, identity and intel backends answer, and the admin page's figures."""

import ipaddress
import re
from datetime import UTC, datetime

from django.db.models import Count, F, Q
from django.urls import reverse

from toolserver.lab import faults
from toolserver.lab.errors import BadRequest, NotFound
from toolserver.lab.estate import EVENT_KINDS
from toolserver.lab.models import Account, Host, Indicator, LabKey, LabWrite, Login, SiemEvent, Ticket, TicketComment

HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")
DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def iso(moment: datetime | None) -> str | None:
    """UTC, to the second, with a Z: 2025-01-31T09:30:00Z."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


def _page(rows, limit: int, shape) -> dict:
    """Newest first, at most `limit`, with the total before the limit so callers see truncation."""
    return {"items": [shape(row) for row in rows[:limit]], "total": rows.count()}


def _in_window(rows, since, until):
    if since:
        rows = rows.filter(at__gte=since)
    if until:
        rows = rows.filter(at__lte=until)
    return rows


def _hostname(ref: str) -> str:
    """A SIEM filter by host takes a hostname; a host id is translated to its hostname."""
    host = Host.objects.filter(host_id__iexact=ref).only("hostname").first()
    return host.hostname if host else ref


# siem ---------------------------------------------------------------------------------
def logins(*, user="", host="", since=None, until=None, limit=50) -> dict:
    rows = _in_window(Login.objects.all(), since, until)
    if user:
        rows = rows.filter(username__iexact=user)
    if host:
        rows = rows.filter(hostname__iexact=_hostname(host))
    return _page(
        rows.order_by("-at", "-id"),
        limit,
        lambda login: {
            "at": iso(login.at),
            "user": login.username,
            "host": login.hostname,
            "source_ip": login.source_ip,
            "source_country": login.source_country,
            "result": login.result,
            "method": login.method,
        },
    )


def events(*, host="", user="", kind="", since=None, until=None, limit=50) -> dict:
    if kind and kind not in EVENT_KINDS:
        raise BadRequest(f"kind: one of {', '.join(EVENT_KINDS)}")
    rows = _in_window(SiemEvent.objects.all(), since, until)
    if host:
        rows = rows.filter(hostname__iexact=_hostname(host))
    if user:
        rows = rows.filter(username__iexact=user)
    if kind:
        rows = rows.filter(kind=kind)
    return _page(
        rows.order_by("-at", "-id"),
        limit,
        lambda event: {
            "at": iso(event.at),
            "kind": event.kind,
            "host": event.hostname or None,
            "user": event.username or None,
            "summary": event.summary,
        },
    )


# edr ----------------------------------------------------------------------------------
def find_host(ref: str) -> Host:
    """A host by its id (H-1042) or its hostname (WS-FIN-07), in any case."""
    host = Host.objects.filter(Q(host_id__iexact=ref) | Q(hostname__iexact=ref)).first()
    if host is None:
        raise NotFound(ref)
    return host


def host_dict(host: Host) -> dict:
    return {
        "host_id": host.host_id,
        "hostname": host.hostname,
        "os": host.os,
        "role": host.role,
        "owner": host.owner,
        "ip": host.ip,
        "criticality": host.criticality,
        "isolated": host.isolated,
        "last_seen": iso(host.last_seen),
    }


def host(ref: str) -> dict:
    return host_dict(find_host(ref))


def processes(ref: str, *, since=None, limit=50) -> dict:
    rows = _in_window(find_host(ref).processes.all(), since, None)
    return _page(
        rows.order_by("-at", "-id"),
        limit,
        lambda process: {
            "at": iso(process.at),
            "pid": process.pid,
            "ppid": process.ppid,
            "image": process.image,
            "command_line": process.command_line,
            "user": process.username or None,
            "sha256": process.sha256 or None,
        },
    )


def connections(ref: str, *, since=None, limit=50) -> dict:
    rows = _in_window(find_host(ref).connections.all(), since, None)
    return _page(
        rows.order_by("-at", "-id"),
        limit,
        lambda connection: {
            "at": iso(connection.at),
            "pid": connection.pid,
            "image": connection.image,
            "remote_ip": connection.remote_ip,
            "remote_domain": connection.remote_domain or None,
            "remote_port": connection.remote_port,
            "bytes_out": connection.bytes_out,
        },
    )


# identity -----------------------------------------------------------------------------
def find_account(username: str) -> Account:
    account = Account.objects.filter(username__iexact=username).first()
    if account is None:
        raise NotFound(username)
    return account


def account_dict(account: Account) -> dict:
    return {
        "username": account.username,
        "display_name": account.display_name,
        "email": account.email,
        "department": account.department,
        "title": account.title,
        "privileged": account.privileged,
        "disabled": account.disabled,
        "mfa": account.mfa,
        "last_login": iso(account.last_login),
    }


def account(username: str) -> dict:
    return account_dict(find_account(username))


# intel --------------------------------------------------------------------------------
def normalise_indicator(kind: str, value: str) -> str:
    if kind not in Indicator.KINDS:
        raise BadRequest(f"kind: one of {', '.join(Indicator.KINDS)}")
    value = value.strip().lower()
    if kind == "hash" and HASH.match(value):
        return value
    if kind == "domain" and DOMAIN.match(value.rstrip(".")):
        return value.rstrip(".")
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    raise BadRequest(f"value: not a valid {kind} (hash: md5, sha1 or sha256 hex; ip: v4 or v6; domain: a host name)")


def indicator(kind: str, value: str) -> dict:
    value = normalise_indicator(kind, value)
    found = Indicator.objects.filter(kind=kind, value=value).first()
    if found is None:  # not knowing an indicator is an answer, not an error
        return {
            "kind": kind,
            "value": value,
            "verdict": "unknown",
            "confidence": 0,
            "tags": [],
            "first_seen": None,
            "source": "lab-intel",
        }
    return {
        "kind": kind,
        "value": value,
        "verdict": found.verdict,
        "confidence": found.confidence,
        "tags": list(found.tags),
        "first_seen": iso(found.first_seen),
        "source": found.source,
    }


# ticketing ----------------------------------------------------------------------------
def ticket(number: int) -> Ticket | None:
    """For the ticket page."""
    return Ticket.objects.prefetch_related("comments").filter(number=number).first()


def written_under(idempotency_key: str) -> dict:
    """The tickets and comments that writes under this Idempotency-Key created, oldest first."""
    tickets = Ticket.objects.filter(idempotency_key=idempotency_key).order_by("number")
    comments = TicketComment.objects.filter(idempotency_key=idempotency_key).select_related("ticket").order_by("id")
    return {
        "tickets": [{"ticket_id": str(t.number), "url": reverse("lab:ticket", args=[t.number])} for t in tickets],
        "comments": [{"ticket_id": str(c.ticket.number), "comment_id": str(c.pk)} for c in comments],
    }


# the admin page -----------------------------------------------------------------------
def write_counts() -> list[dict]:
    """LabWrite counts per backend and outcome, every backend and outcome present."""
    outcomes = LabWrite.Outcome.values
    counts = {
        (row["backend"], row["outcome"]): row["n"]
        for row in LabWrite.objects.values("backend", "outcome").annotate(n=Count("id")).order_by()
    }
    return [
        {
            "backend": backend,
            "counts": [counts.get((backend, outcome), 0) for outcome in outcomes],
            "total": sum(counts.get((backend, outcome), 0) for outcome in outcomes),
        }
        for backend in faults.BACKENDS
    ]


def latest_writes(n: int = 20) -> list[LabWrite]:
    return list(LabWrite.objects.order_by("-received_at", "-id")[:n])


def keys() -> list[LabKey]:
    return list(LabKey.objects.order_by(F("revoked_at").asc(nulls_first=True), "name", "-created_at"))
