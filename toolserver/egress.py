"""Where a tool server may send its credential: the deployment's allow-list of backend hosts.

GATEHOUSE_BACKEND_ALLOWED_HOSTS lists entries, comma-separated:
  splunk.corp.example        a host name (any port)
  *.okta.com                 every host name under a domain
  jira.corp.example:8443     a host name on one port
  10.20.0.0/16, 192.0.2.7    addresses and networks (any port); 127.0.0.1:8000 one port of one

A host name must be listed by name, an address by an address or network entry. A name is
resolved once per connection and the connection goes to the address that was checked, so a name
that resolves elsewhere a moment later (DNS rebinding) cannot redirect it. A listed name vouches
only for public addresses: loopback, private, link-local and other special ranges pass only when
the address or its network is listed too.

Checked in the server's own process on every connection (the adapters' HTTP clients come from
http_client()), and, without DNS, in the console when an admin sets a URL (check_listed), so a
refused host is said at once.
This module runs in the server process without Django.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass

import anyio
import httpcore2
import httpx2

VARIABLE = "GATEHOUSE_BACKEND_ALLOWED_HOSTS"


class EgressRefused(Exception):
    """The backend's address is not on the allow-list. The message names host and port, nothing else."""


@dataclass(frozen=True)
class Entry:
    name: str | None = None  # lower-case; "*.example.com" for a domain
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    def matches_name(self, host: str, port: int) -> bool:
        if self.name is None or self.port not in (None, port):
            return False
        host = host.lower().rstrip(".")
        if self.name.startswith("*."):
            return host.endswith(self.name[1:]) and host != self.name[2:]
        return host == self.name

    def covers(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return self.network is not None and self.port in (None, port) and address in self.network


def parse(raw: str | list[str]) -> tuple[Entry, ...]:
    """The entries of the allow-list. Raises ValueError naming the first entry it cannot read."""
    items = raw.split(",") if isinstance(raw, str) else raw
    return tuple(_entry(item.strip()) for item in items if item.strip())


def _entry(item: str) -> Entry:
    host, port = item, None
    if item.startswith("["):  # [::1]:8000
        host, _, rest = item[1:].partition("]")
        port = _port(item, rest.removeprefix(":")) if rest else None
    elif item.count(":") == 1:
        host, _, rest = item.partition(":")
        port = _port(item, rest)
    try:
        return Entry(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    label = name.removeprefix("*.")
    if not label or not all(part and all(c.isalnum() or c == "-" for c in part) for part in label.split(".")):
        raise ValueError(f"{item!r} is not a host name, address or network")
    return Entry(name=name, port=port)


def _port(item: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{item!r} has no valid port")
    return int(text)


def check_listed(entries: tuple[Entry, ...], host: str, port: int) -> None:
    """The host itself is on the list: a name by a name entry, an address by an address or network. No DNS."""
    address = _address(host)
    listed = (
        any(entry.matches_name(host, port) for entry in entries)
        if address is None
        else any(entry.covers(address, port) for entry in entries)
    )
    if not listed:
        raise EgressRefused(f"{_where(host, port)} is not an allowed backend host ({VARIABLE})")


def check(entries: tuple[Entry, ...], host: str, port: int, addresses: list[str]) -> None:
    """Raise EgressRefused unless `host` is listed and every address it resolved to may be reached.

    A listed name vouches for public addresses only: a special one (loopback, private, link-local,
    reserved) must be covered by an address or network entry of its own.
    """
    check_listed(entries, host, port)
    if not addresses:
        raise EgressRefused(f"{_where(host, port)} has no address")
    for text in addresses:
        address = _address(text)
        if address is None:  # not an address at all: nothing vouches for it
            raise EgressRefused(f"{_where(host, port)} resolved to {text!r}, which is not an address")
        if not address.is_global and not any(entry.covers(address, port) for entry in entries):
            raise EgressRefused(
                f"{_where(host, port)} resolves to {address}, which is not an allowed address ({VARIABLE})"
            )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def from_environ(environ=os.environ) -> tuple[Entry, ...]:
    """The server process's allow-list, as its launcher was given it; none given: nothing is allowed."""
    try:
        return parse(environ.get(VARIABLE, ""))
    except ValueError:
        return ()


class GuardedNetwork(httpcore2.AsyncNetworkBackend):
    """Resolves each connection's host, checks every address, then connects to a checked one.

    TLS still verifies the certificate for the URL's host name: httpcore sends the origin's name
    as SNI whatever address the connection went to.
    """

    def __init__(self, entries: tuple[Entry, ...]):
        self._entries = entries
        self._inner = httpcore2.AnyIOBackend()

    # The signatures are httpcore's AsyncNetworkBackend's, timeout included.
    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ASYNC109
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"cannot resolve {_where(host, port)} in time") from None
        except (OSError, UnicodeError):
            raise httpcore2.ConnectError(f"cannot resolve {_where(host, port)}") from None
        addresses = [str(info[4][0]) for info in infos]
        check(self._entries, host, port, addresses)
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ASYNC109
        raise EgressRefused("a backend is reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def http_client(entries: tuple[Entry, ...] | None = None, **options) -> httpx2.AsyncClient:
    """An HTTP client whose every connection passes the allow-list (from the environment by default).

    No proxy from the environment: a proxy would connect on our behalf, past the check.
    """
    # One TLS context for both pools below: each reads the system's CA file (25 ms of a server's start).
    ssl_context = httpx2.create_ssl_context(trust_env=False)
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    # httpx builds its pool without a way to pass a network backend; this pool is the same one
    # with the guarded network under it.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=ssl_context,
        network_backend=GuardedNetwork(from_environ() if entries is None else entries),
    )
    return httpx2.AsyncClient(transport=transport, trust_env=False, **options)
