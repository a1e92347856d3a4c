"""Local stand-ins for vendor APIs no test can run here: CrowdStrike Falcon and Jira Cloud.

Each is a small HTTP server on 127.0.0.1 (a thread of the test process) that answers the calls the
adapters make with the vendors' documented responses (their shapes and field names copied from
the API references' examples: Falcon's `{"meta", "resources", "errors"}` envelope, its OAuth2
token answer, device query, device details and host action; Jira's CreatedIssue, /search/jql,
comment list, comment and /myself), checks the credential as the vendor does, and keeps the state
those calls change (a device's containment status, issues and their comments), so a test can
count what reached it. Serving, recording and the faults (fail, lose, hold) are
tests/toolserver/stand_in.py's.
"""

import base64
import re
import secrets
from urllib.parse import parse_qs

from tests.toolserver.stand_in import Answer, Seen, StandIn

# -- CrowdStrike Falcon ------------------------------------------------------------------------------
FALCON_CLIENT_ID = "0123456789abcdef0123456789abcdef"


def _falcon(resources: list, *, total: int | None = None, status: int = 200) -> Answer:
    meta: dict = {"query_time": 0.004, "powered_by": "device-api", "trace_id": secrets.token_hex(16)}
    if total is not None:
        meta["pagination"] = {"offset": 0, "limit": 100, "total": total}
    return status, {"meta": meta, "resources": resources, "errors": []}, {}


def _falcon_error(status: int, message: str) -> Answer:
    meta = {"query_time": 0.001, "powered_by": "crowdstrike-api-gateway", "trace_id": secrets.token_hex(16)}
    return status, {"meta": meta, "errors": [{"code": status, "message": message}]}, {}


def falcon_device(hostname: str, *, status: str = "normal") -> dict:
    """A device record as GetDeviceDetailsV2 documents it (a subset of its fields)."""
    return {
        "device_id": secrets.token_hex(16),
        "cid": "0123456789abcdef0123456789abcdef",
        "agent_version": "7.10.17706.0",
        "hostname": hostname,
        "local_ip": "10.20.30.40",
        "external_ip": "198.51.100.20",
        "mac_address": "00-50-56-aa-bb-cc",
        "first_seen": "2024-01-15T09:12:44Z",
        "last_seen": "2026-12-04T23:58:02Z",
        "machine_domain": "corp.example",
        "os_version": "Windows 11",
        "platform_name": "Windows",
        "product_type_desc": "Workstation",
        "status": status,
        "tags": [],
    }


class FalconStandIn(StandIn):
    """The Falcon API's token, host query, host details and host action endpoints."""

    def __init__(self, secret: str, hostnames: tuple[str, ...] = ()):
        self.secret = secret
        self.devices = {device["device_id"]: device for device in map(falcon_device, hostnames)}
        self.tokens: set[str] = set()
        super().__init__()

    def add(self, hostname: str, *, status: str = "normal") -> dict:
        device = falcon_device(hostname, status=status)
        self.devices[device["device_id"]] = device
        return device

    def device(self, hostname: str) -> dict:
        return next(device for device in self.devices.values() if device["hostname"] == hostname)

    @property
    def actions(self) -> list[Seen]:
        return self.seen("POST", "/devices/entities/devices-actions/v2")

    def answer(self, seen: Seen) -> Answer:
        if seen.path == "/oauth2/token" and seen.method == "POST":
            form = {key: values[0] for key, values in parse_qs(seen.body.decode()).items()}
            if form.get("client_id") != FALCON_CLIENT_ID or form.get("client_secret") != self.secret:
                return _falcon_error(401, "access denied, invalid client credentials")
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
            return 201, {"access_token": token, "token_type": "bearer", "expires_in": 1799}, {}
        bearer = seen.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens:
            return _falcon_error(401, "access denied, authorization failed")
        if seen.path == "/devices/queries/devices/v1" and seen.method == "GET":
            found = list(self.devices)
            if "filter" in seen.query:
                match = re.fullmatch(r"(hostname|device_id):'((?:[^'\\]|\\.)*)'", seen.query["filter"][0])
                if match is None:
                    return _falcon_error(400, "Invalid filter")
                wanted = re.sub(r"\\(.)", r"\1", match.group(2)).lower()
                found = [aid for aid, device in self.devices.items() if device[match.group(1)].lower() == wanted]
            return _falcon(found, total=len(found))
        if seen.path == "/devices/entities/devices/v2" and seen.method == "GET":
            return _falcon([self.devices[aid] for aid in seen.query.get("ids", []) if aid in self.devices])
        if seen.path == "/devices/entities/devices-actions/v2" and seen.method == "POST":
            action, ids = seen.query.get("action_name", [""])[0], seen.json().get("ids", [])
            if action not in ("contain", "lift_containment") or not all(aid in self.devices for aid in ids):
                return _falcon_error(400, "Invalid action or device ids")
            for aid in ids:
                self.devices[aid]["status"] = (
                    "containment_pending" if action == "contain" else "lift_containment_pending"
                )
            return _falcon([{"id": aid, "path": ""} for aid in ids], status=202)
        return _falcon_error(404, "Not Found")


# -- Jira Cloud --------------------------------------------------------------------------------------
JIRA_EMAIL = "soc-bot@example.com"


class JiraStandIn(StandIn):
    """Jira Cloud's issue create, JQL search, comments and /myself, for one project."""

    def __init__(self, token: str, project: str = "SEC"):
        self.token, self.project = token, project
        self.issues: list[dict] = []
        self.comments: dict[str, list[dict]] = {}
        super().__init__()

    @property
    def creates(self) -> list[Seen]:
        return self.seen("POST", "/rest/api/3/issue")

    def _authorised(self, seen: Seen) -> bool:
        header = seen.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{self.token}".encode()).decode()
        return header in (basic, f"Bearer {self.token}")

    def _issue(self, id_or_key: str) -> dict | None:
        return next((issue for issue in self.issues if id_or_key in (issue["id"], issue["key"])), None)

    def answer(self, seen: Seen) -> Answer:
        if not self._authorised(seen):
            return 401, {"errorMessages": ["You are not authenticated."], "errors": {}}, {}
        if seen.path == "/rest/api/3/myself":
            return (
                200,
                {
                    "accountId": "5b10a2844c20165700ede21g",
                    "accountType": "atlassian",
                    "active": True,
                    "displayName": "SOC Bot",
                    "emailAddress": JIRA_EMAIL,
                    "self": f"{self.url}/rest/api/3/user?accountId=5b10a2844c20165700ede21g",
                    "timeZone": "UTC",
                },
                {},
            )
        if seen.path == "/rest/api/3/issue" and seen.method == "POST":
            fields = seen.json()["fields"]
            if (
                fields.get("project", {}).get("key") != self.project
                or fields.get("description", {}).get("type") != "doc"
            ):
                return 400, {"errorMessages": [], "errors": {"project": "valid project is required"}}, {}
            number = len(self.issues) + 1
            issue = {"id": str(10000 + number), "key": f"{self.project}-{number}", "fields": fields}
            self.issues.append(issue)
            self.comments[issue["id"]] = []
            return (
                201,
                {
                    "id": issue["id"],
                    "key": issue["key"],
                    "self": f"{self.url}/rest/api/3/issue/{issue['id']}",
                    "transition": {"status": 200, "errorCollection": {"errorMessages": [], "errors": {}}},
                },
                {},
            )
        if seen.path == "/rest/api/3/search/jql":
            jql = seen.query["jql"][0]
            project, label = re.search(r'project = "([^"]+)"', jql), re.search(r'labels = "([^"]+)"', jql)
            found = [
                issue
                for issue in self.issues
                if project
                and issue["key"].startswith(project.group(1) + "-")
                and (label is None or label.group(1) in issue["fields"]["labels"])
            ]
            limit = int(seen.query.get("maxResults", ["50"])[0])
            issues = [
                {"expand": "", "id": issue["id"], "key": issue["key"], "self": f"{self.url}/rest/api/3/issue/{issue['id']}",
                 "fields": {"summary": issue["fields"]["summary"]}}
                for issue in found[:limit]
            ]  # fmt: skip
            return 200, {"issues": issues, "isLast": len(found) <= limit}, {}
        match = re.fullmatch(r"/rest/api/3/issue/([^/]+)", seen.path)
        if match and seen.method == "GET":
            issue = self._issue(match.group(1))
            if issue is None:
                return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}, {}
            key = issue["key"].split("-")[0]  # an issue's key is its project's key and a number
            project = {"self": f"{self.url}/rest/api/3/project/{key}", "id": "10000", "key": key, "name": key,
                       "projectTypeKey": "software", "simplified": False}  # fmt: skip
            fields = {"project": project} if seen.query.get("fields") == ["project"] else issue["fields"]
            return 200, {"expand": "", "id": issue["id"], "key": issue["key"], "fields": fields}, {}
        match = re.fullmatch(r"/rest/api/3/issue/([^/]+)/comment", seen.path)
        if match:
            issue = self._issue(match.group(1))
            if issue is None:
                return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}, {}
            comments = self.comments[issue["id"]]
            if seen.method == "POST":
                body = seen.json()
                comment = {
                    "id": str(20000 + sum(map(len, self.comments.values())) + 1),
                    "self": f"{self.url}/rest/api/3/issue/{issue['id']}/comment/0",
                    "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "SOC Bot", "active": True},
                    "body": body["body"],
                    "created": "2026-12-05T01:00:00.000+0000",
                    "updated": "2026-12-05T01:00:00.000+0000",
                    "jsdPublic": True,
                    "properties": body.get("properties", []),
                }
                comments.append(comment)
                return 201, {key: value for key, value in comment.items() if key != "properties"}, {}
            start, limit = int(seen.query.get("startAt", ["0"])[0]), int(seen.query.get("maxResults", ["50"])[0])
            ordered = comments[::-1] if seen.query.get("orderBy") == ["-created"] else comments
            expand = "properties" in seen.query.get("expand", [""])[0]
            page = [
                comment if expand else {key: value for key, value in comment.items() if key != "properties"}
                for comment in ordered[start : start + limit]
            ]
            return 200, {"comments": page, "maxResults": limit, "startAt": start, "total": len(comments)}, {}
        return 404, {"errorMessages": ["Not found"], "errors": {}}, {}
