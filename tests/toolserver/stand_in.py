"""A vendor API's stand-in: a small HTTP server on 127.0.0.1 (a thread of the test process).

Each vendor's stand-in (siem_stand_in.py: Splunk, Elasticsearch; misp_server.py: MISP;
vendor_standins.py: CrowdStrike Falcon, Jira Cloud; test_adapter_contract.py: Answering) is a
subclass that says what the vendor answers, `answer(seen) -> (status, body, headers)`, a body being
bytes or JSON-able; this class serves it. Every request answered is kept (`requests`, each a `Seen`:
method, path without the stand-in's prefix, query, body, headers), with the answer computed under
a lock, so a test can read what the adapter sent and count what reached the vendor.

Faults, each for the next request whose path matches (`path`, or a prefix ending in "*"; "*" is
every path), or every such request if sticky:
  fail(path, status, body, headers)  answer that instead (the vendor never sees the request: it is
                                     not kept in `requests`)
  lose(path)                         do the request's work, then close the connection unanswered
  hold(path)                         answer only once release() (or close()) is called, bounded by
                                     WAIT_S, so a client with a short timeout gives up first
"""

import contextlib
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support import WAIT_S

Answer = tuple[int, object, dict]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(repr=False)

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), "")

    @property
    def authorization(self) -> str:
        return self.header("Authorization")

    @property
    def form(self) -> dict[str, list[str]]:
        """The body's fields if it is a form, else {}."""
        if not self.header("Content-Type").startswith("application/x-www-form-urlencoded"):
            return {}
        return parse_qs(self.body.decode())

    def json(self):
        return json.loads(self.body) if self.body else None


class StandIn:
    def __init__(self, *, prefix: str = ""):
        self.prefix = prefix
        self.requests: list[Seen] = []
        self._faults: list[tuple[str, str, object, bool]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._closed = False
        self._connections: set[socket.socket] = set()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with stand_in._lock:
                    stand_in._connections.add(self.connection)

            def finish(self):
                with stand_in._lock:
                    stand_in._connections.discard(self.connection)
                super().finish()

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    parts.path.removeprefix(stand_in.prefix),
                    parse_qs(parts.query),
                    self.rfile.read(length),
                    dict(self.headers),
                )
                kind, value = stand_in._fault_for(seen)
                if kind == "fail":
                    status, body, headers = value
                else:
                    if kind == "hold":
                        stand_in._released.wait(WAIT_S)
                    with stand_in._lock:
                        stand_in.requests.append(seen)
                        status, body, headers = stand_in.answer(seen)
                    if kind == "lose":
                        self.close_connection = True
                        return
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for header, header_value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(header, header_value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _handle

            def log_message(self, *args):  # a request line may carry a query; nothing is printed
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client gone before its (held) answer, or a connection close() ended, is no error.
                if not stand_in._closed and not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    # -- faults -----------------------------------------------------------------------------------
    def fail(
        self, path: str, status: int, body: object = b"{}", headers: dict | None = None, *, sticky: bool = False
    ) -> None:
        self._add("fail", path, (status, body, headers or {}), sticky)

    def lose(self, path: str, *, sticky: bool = False) -> None:
        self._add("lose", path, None, sticky)

    def hold(self, path: str = "*", *, sticky: bool = False) -> None:
        self._released.clear()
        self._add("hold", path, None, sticky)

    def release(self) -> None:
        self._released.set()

    def _add(self, kind: str, path: str, value: object, sticky: bool) -> None:
        with self._lock:
            self._faults.append((kind, path, value, sticky))

    def _fault_for(self, seen: Seen) -> tuple[str, object]:
        with self._lock:
            for index, (kind, path, value, sticky) in enumerate(self._faults):
                if seen.path == path or (path.endswith("*") and seen.path.startswith(path[:-1])):
                    if not sticky:
                        del self._faults[index]
                    return kind, value
        return "", None

    def seen(self, method: str, path: str) -> list[Seen]:
        return [request for request in self.requests if request.method == method and request.path == path]

    def close(self) -> None:
        """Stop answering, a held request let go first, and end every open connection (a client's
        kept-alive one included), so that any later request is refused; a second call does nothing."""
        self.release()
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def answer(self, seen: Seen) -> Answer:
        raise NotImplementedError
