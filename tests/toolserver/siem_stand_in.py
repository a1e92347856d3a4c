"""Splunk's and Elasticsearch's APIs as recorded stand-ins on 127.0.0.1, for contract tests.

Neither vendor's server can run here, so each stand-in answers the vendor's documented responses
(tests/toolserver/fixtures/siem/: Splunk REST API Reference, `server/info` and `search/jobs` with
`exec_mode=oneshot`, `output_mode=json`; Elasticsearch's search API response) to the requests the
adapter sends, refuses a wrong credential as the vendor does (its documented 401 body), and
records every request (method, path, query, form or JSON body, Authorization header) so a test
can read what the adapter asked for. `answer_all` makes every request get one answer instead (a
failure path), `stall` holds every answer until the stand-in is closed (a timeout).
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "siem"
SPLUNK_TOKEN = "splunk-contract-token-0123456789"
ELASTIC_KEY = "ZWxhc3RpYy1jb250cmFjdDprZXktMDEyMzQ1Njc4OQ=="
STALL_LIMIT_S = 10  # the longest a stalled answer waits for close()

SPLUNK_UNAUTHENTICATED = {"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}
ELASTIC_UNAUTHENTICATED = {
    "error": {
        "root_cause": [{"type": "security_exception", "reason": "unable to authenticate with provided credentials"}],
        "type": "security_exception",
        "reason": "unable to authenticate with provided credentials",
    },
    "status": 401,
}


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]] = field(default_factory=dict)
    json: dict | None = None
    authorization: str = ""


class StandIn:
    """One vendor's API: `route(seen)` names the recorded answer, (status, body bytes)."""

    def __init__(self, vendor: str, credential: str, *, prefix: str = "/api"):
        self.vendor, self.credential, self.prefix = vendor, credential, prefix
        self.requests: list[Seen] = []
        self.answer: tuple[int, bytes, dict] | None = None
        self.override_body: dict[str, bytes] = {}  # fixture name -> body answered instead of it
        self._released = threading.Event()
        self._stalled = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    method=self.command,
                    path=parts.path.removeprefix(stand_in.prefix),
                    query=parse_qs(parts.query),
                    authorization=self.headers.get("Authorization", ""),
                )
                kind = self.headers.get("Content-Type", "")
                if raw and kind.startswith("application/x-www-form-urlencoded"):
                    seen.form = parse_qs(raw.decode())
                elif raw:
                    seen.json = json.loads(raw)
                stand_in.requests.append(seen)
                if stand_in._stalled:
                    stand_in._released.wait(STALL_LIMIT_S)
                status, body, headers = stand_in.respond(seen)
                self.send_response(status)
                for header, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(header, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _handle

            def log_message(self, *args):  # nothing of a request on stderr
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def respond(self, seen: Seen) -> tuple[int, bytes, dict]:
        if self.answer is not None:
            return self.answer
        expected = "Bearer " if self.vendor == "splunk" else "ApiKey "
        if seen.authorization != expected + self.credential:
            unauthenticated = SPLUNK_UNAUTHENTICATED if self.vendor == "splunk" else ELASTIC_UNAUTHENTICATED
            return 401, json.dumps(unauthenticated).encode(), {}
        name = self.route(seen)
        if name is None:
            return 404, b'{"messages": [{"type": "ERROR", "text": "Not Found"}]}', {}
        return 200, self.override_body.get(name) or recorded(name), {}

    def route(self, seen: Seen) -> str | None:
        if self.vendor == "splunk":
            if (seen.method, seen.path) == ("GET", "/services/server/info"):
                return "splunk_server_info.json"
            if (seen.method, seen.path) == ("POST", "/services/search/jobs"):
                search = seen.form.get("search", [""])[0]
                return "splunk_oneshot_logins.json" if "tag=authentication" in search else "splunk_oneshot_events.json"
            return None
        if seen.method != "POST" or not seen.path.endswith("/_search") or seen.json is None:
            return None
        if seen.json.get("size") == 0:
            return "elastic_search_empty.json"
        return (
            "elastic_search_logins.json" if "authentication" in json.dumps(seen.json) else "elastic_search_events.json"
        )

    def answer_all(self, status: int, body: bytes = b"{}", headers: dict | None = None) -> None:
        self.answer = (status, body, headers or {})

    def stall(self) -> None:
        self._stalled = True

    def searches(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "POST"]

    def close(self) -> None:
        """Stop answering (a second call does nothing); a stalled answer is let go first."""
        self._released.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(STALL_LIMIT_S)
