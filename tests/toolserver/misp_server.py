"""A stand-in for a MISP instance's REST API on a loopback port, for the contract tests.

MISP itself (PHP, MySQL, Redis, workers) cannot run here, so this serves the two calls the adapter
makes, with the bodies MISP's OpenAPI document (app/webroot/doc/openapi.yaml) gives for them:

    GET  /servers/getVersion      ServerVersionResponse {"version", "perm_sync", ...}
    POST /attributes/restSearch   AttributesRestSearchResponse {"response": {"Attribute": [...]}}
    either, without a valid key   403 UnauthorizedApiErrorResponse {"name", "message", "url"}

restSearch filters as MISP does for what the adapter asks: `value` equal to the attribute's value
or to either half of a composite one, `type` one of a list, deleted attributes left out, `limit`.
Serving, recording every request (`requests`, what the adapter sent) and the faults (`hold()`: a
backend that does not answer) are tests/toolserver/stand_in.py's.
"""

import itertools

from tests.toolserver.stand_in import Answer, Seen, StandIn

API_KEY = "misp-contract-key-0123456789abcdef0123456789abcdef01"  # a stand-in takes any length
UNAUTHORIZED = (  # MISP's words
    "Authentication failed. Please make sure you pass the API key of an API enabled user"
    " along in the Authorization header."
)
_SERIAL = itertools.count(1)
VERSION = {"version": "2.4.142", "perm_sync": False, "perm_sighting": False, "perm_galaxy_editor": False}


def attribute(value: str, type_: str = "ip-dst", **fields) -> dict:
    """An attribute as restSearch returns it (AttributeRestSearchListItem, the document's example values)."""
    event = {
        "id": "12345",
        "org_id": "1",
        "distribution": "0",
        "info": fields.pop("info", "logged source ip"),
        "orgc_id": "1",
        "uuid": "c99506a6-1255-4b71-afa5-7b8ba48c3b1b",
    }
    if "threat_level_id" in fields:
        event["threat_level_id"] = fields.pop("threat_level_id")
    tags = [
        {"id": str(number), "name": name, "colour": "#ffffff", "exportable": True}
        for number, name in enumerate(fields.pop("tags", []), start=1)
    ]
    return {
        "id": fields.pop("id", "12345"),
        "event_id": "12345",
        "object_id": "0",
        "object_relation": None,
        "category": "Network activity",
        "type": type_,
        "value": value,
        "to_ids": fields.pop("to_ids", True),
        "uuid": fields.pop("uuid", f"5e2c0b5e-4d3a-4e1b-9f0a-{next(_SERIAL):012d}"),
        "timestamp": "1617875568",
        "distribution": "5",
        "sharing_group_id": "0",
        "comment": "logged source ip",
        "deleted": fields.pop("deleted", False),
        "disable_correlation": False,
        "first_seen": fields.pop("first_seen", None),
        "last_seen": None,
        "Event": event,
        "Tag": tags,
        **fields,
    }


class MispStandIn(StandIn):
    def __init__(self, *, key: str = API_KEY):
        self.key = key
        self.attributes: list[dict] = []
        super().__init__()

    def publish(self, *attributes: dict) -> None:
        self.attributes.extend(attributes)

    def answer(self, seen: Seen) -> Answer:
        if seen.authorization != self.key:
            return 403, {"name": UNAUTHORIZED, "message": UNAUTHORIZED, "url": seen.path}, {}
        if (seen.method, seen.path) == ("GET", "/servers/getVersion"):
            return 200, VERSION, {}
        if (seen.method, seen.path) == ("POST", "/attributes/restSearch"):
            return 200, {"response": {"Attribute": self._search(seen.json() or {})}}, {}
        return 404, {"name": "Not Found", "message": "Not Found", "url": seen.path}, {}

    def _search(self, query: dict) -> list[dict]:
        types = query.get("type")
        types = [types] if isinstance(types, str) else types
        found = [
            item
            for item in self.attributes
            if not item["deleted"]
            and (not types or item["type"] in types)
            and query.get("value") in (item["value"], *item["value"].split("|"))
        ]
        return found[: int(query.get("limit") or len(found) or 1)]
