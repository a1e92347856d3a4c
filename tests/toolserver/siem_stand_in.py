"""Splunk's and Elasticsearch's APIs as recorded stand-ins on 127.0.0.1, for contract tests.

Neither vendor's server can run here, so each stand-in answers the vendor's documented responses
(tests/toolserver/fixtures/siem/: Splunk REST API Reference, `server/info` and `search/jobs` with
`exec_mode=oneshot`, `output_mode=json`; Elasticsearch's search API response) to the requests the
adapter sends, and refuses a wrong credential as the vendor does (its documented 401 body). Serving,
recording every request and the faults (a sticky `fail("*", ...)` answers every request one way,
`hold()` keeps one unanswered for a timeout) are tests/toolserver/stand_in.py's.
"""

import json
from pathlib import Path

from tests.toolserver.stand_in import Answer, Seen, StandIn

FIXTURES = Path(__file__).parent / "fixtures" / "siem"
SPLUNK_TOKEN = "splunk-contract-token-0123456789"
ELASTIC_KEY = "ZWxhc3RpYy1jb250cmFjdDprZXktMDEyMzQ1Njc4OQ=="

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


class SiemStandIn(StandIn):
    """One vendor's API under /api: `route(seen)` names the recorded answer (a fixture's file name)."""

    scheme = ""  # of the Authorization header
    unauthenticated: dict = {}

    def __init__(self, credential: str):
        self.credential = credential
        self.override_body: dict[str, bytes] = {}  # fixture name -> body answered instead of it
        super().__init__(prefix="/api")

    def answer(self, seen: Seen) -> Answer:
        if seen.authorization != f"{self.scheme} {self.credential}":
            return 401, self.unauthenticated, {}
        name = self.route(seen)
        if name is None:
            return 404, {"messages": [{"type": "ERROR", "text": "Not Found"}]}, {}
        return 200, self.override_body.get(name) or recorded(name), {}

    def route(self, seen: Seen) -> str | None:
        raise NotImplementedError

    def searches(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "POST"]


class SplunkStandIn(SiemStandIn):
    scheme, unauthenticated = "Bearer", SPLUNK_UNAUTHENTICATED

    def __init__(self, credential: str = SPLUNK_TOKEN):
        super().__init__(credential)

    def route(self, seen: Seen) -> str | None:
        if (seen.method, seen.path) == ("GET", "/services/server/info"):
            return "splunk_server_info.json"
        if (seen.method, seen.path) == ("POST", "/services/search/jobs"):
            search = seen.form.get("search", [""])[0]
            return "splunk_oneshot_logins.json" if "tag=authentication" in search else "splunk_oneshot_events.json"
        return None


class ElasticStandIn(SiemStandIn):
    scheme, unauthenticated = "ApiKey", ELASTIC_UNAUTHENTICATED

    def __init__(self, credential: str = ELASTIC_KEY):
        super().__init__(credential)

    def route(self, seen: Seen) -> str | None:
        query = seen.json() if seen.method == "POST" and seen.path.endswith("/_search") else None
        if query is None:
            return None
        if query.get("size") == 0:
            return "elastic_search_empty.json"
        return "elastic_search_logins.json" if "authentication" in json.dumps(query) else "elastic_search_events.json"


STAND_INS: dict[str, type[SiemStandIn]] = {"splunk": SplunkStandIn, "elastic": ElasticStandIn}
