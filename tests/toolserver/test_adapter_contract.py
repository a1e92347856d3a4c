"""One contract, run over every registered adapter (toolserver.adapters.registry).

For each (server, adapter): it implements every method of its server's interface and every tool
of its server is one of them; it declares its parameters validly; against its backend, every
method returns the shape its interface names (adapters.shapes), writes included; and every HTTP
failure becomes the failure adapters.http promises, never a raw error.

A new adapter gets a contract backend below (the lab's is the running lab; a vendor's would be a
recorded stand-in of its API; LDAP's is a real slapd the test starts): without one its contract
test fails, naming it. The HTTP failure mapping is run over the adapters built on HttpBackend;
the LDAP adapters' own mapping is tested against slapd (tests/toolserver/test_ldap_identity.py).
"""

import asyncio
import gzip
import json
import socket
import ssl
import threading
from urllib.parse import urlsplit

import pytest
import trustme

from tests.support import WAIT_S
from tests.toolserver.slapd import AD_PEOPLE, PEOPLE, SERVICE_DN
from tests.toolserver.stand_in import Answer, Seen, StandIn
from tests.toolserver.vendor_standins import FALCON_CLIENT_ID, JIRA_EMAIL
from toolserver import egress, schemas
from toolserver.adapters import registered
from toolserver.adapters.base import (
    BackendError,
    BackendRefused,
    Page,
    Param,
    TargetNotFound,
    WriteContext,
    interface_methods,
)
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import INTERFACES, refusals
from toolserver.adapters.splunk import SplunkSiem
from toolserver.catalog import SERVERS
from toolserver.envelope import BackendFailure
from toolserver.lab import estate

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

ADAPTERS = [pytest.param(server, name, cls, id=f"{server}-{name}") for server, name, cls in registered()]
HTTP_ADAPTERS = [
    pytest.param(server, name, cls, id=f"{server}-{name}")
    for server, name, cls in registered()
    if issubclass(cls, HttpBackend)
]

# Arguments for each tool, in the catalog's order; a later tool may use an earlier one's result.
SAMPLES = {
    "search_logins": lambda done: schemas.SearchLogins(user=estate.PHISHED_USER, lookback_hours=168),
    "search_events": lambda done: schemas.SearchEvents(user=estate.PHISHED_USER, lookback_hours=168),
    "get_host": lambda done: schemas.GetHost(host=estate.PHISHED_HOST),
    "get_process_tree": lambda done: schemas.HostActivity(host=estate.PHISHED_HOST, lookback_hours=168),
    "get_network_connections": lambda done: schemas.HostActivity(host=estate.PHISHED_HOST, lookback_hours=168),
    "isolate_host": lambda done: schemas.HostAction(
        host=estate.PHISHED_HOST, reason="Contract test: isolate the host."
    ),
    "release_host": lambda done: schemas.HostAction(
        host=estate.PHISHED_HOST, reason="Contract test: release the host."
    ),
    "get_user": lambda done: schemas.GetUser(username=estate.PHISHED_USER),
    "disable_account": lambda done: schemas.AccountAction(
        username=estate.PHISHED_USER, reason="Contract test: disable it."
    ),
    "enable_account": lambda done: schemas.AccountAction(
        username=estate.PHISHED_USER, reason="Contract test: enable it."
    ),
    "open_ticket": lambda done: schemas.OpenTicket(
        title="Contract test ticket", body="Opened by the contract test.", severity="low"
    ),
    "add_comment": lambda done: schemas.AddComment(
        ticket_id=done.get("open_ticket", {}).get("ticket_id", "1"), body="A comment."
    ),
    "lookup_indicator": lambda done: schemas.LookupIndicator(kind="ip", value=estate.ATTACKER_IP),
}


def lab_backend(request, server: str) -> dict:
    lab = request.getfixturevalue("lab")
    return {"url": lab.api_url, "credential": lab.keys[server], "params": {}}


def taxii_backend(request, server: str) -> dict:
    """A real TAXII 2.1 server (medallion, tests/toolserver/taxii_server.py) with the sample's indicator on it."""
    from tests.toolserver.taxii_server import READER_PASSWORD, indicator

    taxii = request.getfixturevalue("taxii_server")
    taxii.publish(indicator(f"[ipv4-addr:value = '{estate.ATTACKER_IP}']", name="Contract test", confidence=70))
    return {"url": taxii.url, "credential": READER_PASSWORD, "params": taxii.params()}


def misp_backend(request, server: str) -> dict:
    """A stand-in of MISP's REST API serving its documented responses (tests/toolserver/misp_server.py)."""
    from tests.toolserver.misp_server import API_KEY, attribute

    misp = request.getfixturevalue("misp_server")
    misp.publish(attribute(estate.ATTACKER_IP, info="Contract test", tags=["tlp:white"]))
    return {"url": misp.url, "credential": API_KEY, "params": {}}


def slapd_backend(request, server: str, *, active_directory: bool = False) -> dict:
    slapd = request.getfixturevalue("slapd")
    return {
        "url": slapd.url,
        "credential": slapd.service_password,
        "params": slapd.params(active_directory=active_directory),
    }


def falcon_backend(request, server: str) -> dict:
    """A stand-in of the Falcon API answering with its documented responses (tests/toolserver/vendor_standins.py)."""
    falcon = request.getfixturevalue("falcon")
    return {"url": falcon.url, "credential": falcon.secret, "params": {"client_id": FALCON_CLIENT_ID}}


def jira_backend(request, server: str) -> dict:
    """A stand-in of Jira Cloud's REST API v3 answering with its documented responses."""
    jira = request.getfixturevalue("jira")
    return {"url": jira.url, "credential": jira.token, "params": {"project_key": "SEC", "email": JIRA_EMAIL}}


def siem_stand_in(request, server: str, fixture: str, index: str) -> dict:
    """A vendor's recorded API (tests/toolserver/siem_stand_in.py): Splunk's or Elasticsearch's documented answers."""
    stand_in = request.getfixturevalue(fixture)
    return {"url": stand_in.url, "credential": stand_in.credential, "params": {"index": index}}


# adapter name -> how its contract test reaches a backend: {"url", "credential", "params"}.
CONTRACT_BACKENDS = {
    "crowdstrike": falcon_backend,
    "jira": jira_backend,
    "lab": lab_backend,
    "taxii": taxii_backend,
    "misp": misp_backend,
    "ldap": slapd_backend,
    "active-directory": lambda request, server: slapd_backend(request, server, active_directory=True),
    "splunk": lambda request, server: siem_stand_in(request, server, "splunk_api", "security"),
    "elastic": lambda request, server: siem_stand_in(request, server, "elastic_api", "logs-*"),
}
# adapter name -> (URL scheme, parameters) where the stand-in failure tests' http and example() do not fit.
STAND_INS = {
    "ldap": ("ldap", {"base_dn": PEOPLE, "bind_dn": SERVICE_DN}),
    "active-directory": ("ldap", {"base_dn": AD_PEOPLE, "bind_dn": SERVICE_DN}),
    "crowdstrike": ("http", {"client_id": FALCON_CLIENT_ID}),
    "jira": ("http", {"project_key": "SEC", "email": JIRA_EMAIL}),
}


def allow(monkeypatch, url: str) -> None:
    """This test process may connect to `url`'s host, as a server process on that allow-list would."""
    parts = urlsplit(url)
    monkeypatch.setenv(egress.VARIABLE, f"{parts.hostname}:{parts.port}")


def build(cls, url: str, credential: str = "contract-test-key", params: dict | None = None, timeout_s: float = 5):
    values = params if params is not None else {param.name: example(param) for param in cls.params}
    return cls(url=url, credential=credential, timeout_s=timeout_s, params=values)


def example(param: Param) -> str:
    """A value for a parameter of an adapter whose contract backend ignores it (the failure mapping)."""
    return "contract-test" if not param.pattern else ""


def write_context(tool: str) -> WriteContext:
    return WriteContext(idempotency_key=f"contract-{tool}", trigger="CONTRACT-1", correlation_id="contract")


async def call(backend, tool: str, args):
    handler = getattr(backend, tool)
    return await (handler(args, write_context(tool)) if SERVERS_TOOLS[tool].write else handler(args))


SERVERS_TOOLS = {tool.name: tool for spec in SERVERS.values() for tool in spec.tools}


@pytest.mark.parametrize("server, name, cls", ADAPTERS)
def test_it_implements_every_method_of_its_interface_for_every_tool_of_its_server(server, name, cls):
    interface = INTERFACES[server]
    assert issubclass(cls, interface) and not cls.__abstractmethods__
    assert refusals(server, cls) == []
    assert set(interface_methods(interface)) == {"health"} | {tool.name for tool in SERVERS[server].tools}
    assert all(getattr(interface, tool.name).returns for tool in SERVERS[server].tools)  # each names its shape


@pytest.mark.parametrize("server, name, cls", ADAPTERS)
def test_it_declares_its_parameters_validly(server, name, cls):
    assert isinstance(cls.params, tuple) and all(isinstance(param, Param) for param in cls.params)
    assert [problem for param in cls.params for problem in param.problems()] == []
    assert len({param.name for param in cls.params}) == len(cls.params)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server, name, cls", ADAPTERS)
def test_against_its_backend_every_method_returns_its_declared_shape(server, name, cls, request, monkeypatch):
    assert name in CONTRACT_BACKENDS, (
        f"adapter {name!r} of {server} has no contract backend in {__name__}.CONTRACT_BACKENDS"
    )
    reach = CONTRACT_BACKENDS[name](request, server)
    allow(monkeypatch, reach["url"])
    interface = INTERFACES[server]

    async def run() -> dict:
        backend = build(cls, reach["url"], reach["credential"], reach["params"])
        done = {}
        try:
            assert isinstance(await backend.health(), str)
            for tool in SERVERS[server].tools:
                shape, paged = getattr(interface, tool.name).returns
                outcome = await call(backend, tool.name, SAMPLES[tool.name](done))
                if paged:
                    assert isinstance(outcome, Page) and outcome.items, (tool.name, outcome)
                    items = outcome.items
                else:
                    assert isinstance(outcome, dict), (tool.name, outcome)
                    items = [outcome]
                for item in items:
                    assert set(item) == set(shape.model_fields), (tool.name, item)
                    assert shape.model_validate(item).model_dump() == item
                done[tool.name] = outcome
        finally:
            await backend.aclose()
        return done

    done = asyncio.run(run())
    assert set(done) == {tool.name for tool in SERVERS[server].tools}


class Answering(StandIn):
    """A stand-in for a backend that answers every request with one reply: (status, body, headers)."""

    def __init__(self):
        self.reply: Answer = (200, b"{}", {})
        super().__init__(prefix="/api")

    def answer(self, seen: Seen) -> Answer:
        return self.reply


@pytest.fixture(scope="module")
def answering():
    backend = Answering()
    yield backend
    backend.close()


DETAIL = json.dumps({"detail": "limit is out of range"}).encode()
FAILURES = [
    pytest.param((401, b"{}", {}), (BackendError, BackendFailure.FORBIDDEN), id="401"),
    pytest.param((403, b"{}", {}), (BackendError, BackendFailure.FORBIDDEN), id="403"),
    pytest.param((429, b"{}", {"Retry-After": "7"}), (BackendError, BackendFailure.RATE_LIMITED), id="429"),
    pytest.param((500, b"{}", {}), (BackendError, BackendFailure.UNAVAILABLE), id="500"),
    pytest.param((503, b"{}", {}), (BackendError, BackendFailure.UNAVAILABLE), id="503"),
    pytest.param((504, b"{}", {}), (BackendError, BackendFailure.TIMEOUT), id="504"),
    pytest.param((200, b"<html>not json</html>", {}), (BackendError, BackendFailure.MALFORMED), id="200-not-json"),
    pytest.param((200, b"[]", {}), (BackendError, BackendFailure.MALFORMED), id="200-not-an-object"),
    pytest.param((200, b"{}", {}), (BackendError, BackendFailure.MALFORMED), id="200-not-the-shape"),
    pytest.param((404, b"{}", {}), (TargetNotFound, None), id="404"),
    pytest.param((400, DETAIL, {}), (BackendRefused, None), id="400"),
    pytest.param((409, DETAIL, {}), (BackendRefused, None), id="409"),
]


@pytest.mark.parametrize("server, name, cls", HTTP_ADAPTERS)
@pytest.mark.parametrize("answer, expected", FAILURES)
def test_every_http_failure_becomes_a_typed_failure(server, name, cls, answer, expected, answering, monkeypatch):
    answering.reply = answer
    allow(monkeypatch, answering.url)
    kind, failure = expected

    async def run() -> list:
        backend = build(cls, answering.url, params=STAND_INS.get(name, ("http", None))[1])
        raised = []
        try:
            methods = ["health", *(tool.name for tool in SERVERS[server].tools)]
            for method in methods:
                try:
                    if method == "health":
                        await backend.health()
                    else:
                        await call(backend, method, SAMPLES[method]({}))
                except Exception as exc:  # noqa: BLE001 - what was raised is the point
                    raised.append((method, exc))
                else:
                    raised.append((method, None))
        finally:
            await backend.aclose()
        return raised

    for method, exc in asyncio.run(run()):
        if answer[0] == 404 and method == "health":
            assert isinstance(exc, TargetNotFound), (method, exc)
            continue
        assert isinstance(exc, kind), (method, exc)
        if failure is not None:
            assert exc.failure == failure, (method, exc.failure)
        if answer[0] == 429:
            assert exc.retry_after_s == 7
        if kind is BackendRefused:
            assert exc.detail == "limit is out of range"


@pytest.mark.parametrize("server, name, cls", ADAPTERS)
def test_an_unreachable_or_unlisted_backend_is_a_typed_failure(server, name, cls, answering, monkeypatch):
    monkeypatch.setenv(egress.VARIABLE, "127.0.0.1:1")  # listed, and nothing listens there
    scheme, params = STAND_INS.get(name, ("http", None))

    async def health(url):
        backend = build(cls, url, params=params)
        try:
            await backend.health()
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as refused:
        asyncio.run(health(f"{scheme}://127.0.0.1:1/api"))
    assert refused.value.failure == BackendFailure.UNAVAILABLE
    with pytest.raises(egress.EgressRefused):  # not listed: never connected to
        asyncio.run(health(answering.url.replace("http", scheme, 1)))


class UntrustedTls:
    """A TLS listener on loopback whose certificate comes from a CA of its own (trustme's), which no
    client trusts. It counts the connections it accepted and keeps every byte a client sent once the
    handshake was done: a request, if any got through."""

    def __init__(self):
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(self._context)
        self.accepted, self.received = 0, b""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}/api"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # shut down
                return
            self.accepted += 1
            connection.settimeout(WAIT_S)
            try:
                with self._context.wrap_socket(connection, server_side=True) as tls:
                    self.received += tls.recv(65536)
            except OSError:  # the client refused the certificate (ssl.SSLError), or went away
                connection.close()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone would not)
        self._listener.close()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def untrusted_tls():
    backend = UntrustedTls()
    yield backend
    backend.close()


@pytest.mark.parametrize("server, name, cls", HTTP_ADAPTERS)
def test_a_backend_whose_certificate_no_ca_vouches_for_is_unavailable_and_never_sent_the_credential(
    server, name, cls, untrusted_tls, monkeypatch
):
    allow(monkeypatch, untrusted_tls.url)
    _, params = STAND_INS.get(name, (None, None))
    accepted = untrusted_tls.accepted

    async def health():
        backend = build(cls, untrusted_tls.url, credential="never-over-untrusted-tls", params=params)
        try:
            await backend.health()
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as refused:
        asyncio.run(health())
    assert refused.value.failure == BackendFailure.UNAVAILABLE
    # It reached the listener (the TLS handshake refused it, not something before), and sent it nothing.
    assert untrusted_tls.accepted > accepted
    assert untrusted_tls.received == b""  # the handshake failed: no request, so no credential, crossed it


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """A JSON object of 20 MiB once inflated, about 20 KiB as sent: past HttpBackend's 16 MiB."""
    return gzip.compress(b'{"pad": "' + b"A" * (20 * 1024 * 1024) + b'"}', compresslevel=9)


@pytest.mark.parametrize("server, name, cls", HTTP_ADAPTERS)
@pytest.mark.parametrize("status", [200, 400])
def test_a_body_past_the_cap_once_inflated_is_malformed_never_a_result(
    server, name, cls, status, gzip_bomb, answering, monkeypatch
):
    answering.reply = (status, gzip_bomb, {"Content-Encoding": "gzip"})  # 400: the refusal's detail is read bounded too
    allow(monkeypatch, answering.url)

    async def run():
        backend = build(cls, answering.url, params=STAND_INS.get(name, ("http", None))[1])
        try:
            return await backend._request("POST", "/search", target="search")
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as refused:
        asyncio.run(run())
    assert refused.value.failure == BackendFailure.MALFORMED


def test_a_gzip_body_under_the_cap_reads_as_its_json_without_its_encoding_headers(answering, monkeypatch):
    answering.reply = (200, gzip.compress(b'{"results": []}'), {"Content-Encoding": "gzip"})
    allow(monkeypatch, answering.url)

    async def run():
        backend = build(SplunkSiem, answering.url)
        try:
            return await backend._response("GET", "/search")
        finally:
            await backend.aclose()

    response = asyncio.run(run())
    assert response.json() == {"results": []}
    assert "Content-Encoding" not in response.headers


def test_a_body_that_stops_arriving_is_a_timeout(monkeypatch):
    """The headers come, then part of the body and nothing more: the read times out, a typed failure."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            done.wait(WAIT_S)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    allow(monkeypatch, url)

    async def run():
        backend = build(SplunkSiem, url, timeout_s=0.5)
        try:
            return await backend._request("GET", "/search")
        finally:
            await backend.aclose()

    try:
        with pytest.raises(BackendError) as failed:
            asyncio.run(run())
        assert failed.value.failure == BackendFailure.TIMEOUT
    finally:
        done.set()
        thread.join(WAIT_S)
        listener.close()
