"""Jira Cloud for `ticketing`: an issue per ticket, a comment per comment, REST API v3.

Parameters: `project_key` (the project issues are opened in, e.g. SEC), `issue_type` (blank: Task)
and `email`. With an email the credential is an Atlassian API token, sent as HTTP basic
authentication (email:token); without one, a bearer token (an OAuth 2.0 access token, the URL then
being https://api.atlassian.com/ex/jira/<cloud id>). Check connection reads `GET /rest/api/3/myself`.

Exactly once without Jira deduplicating: every write carries a mark derived from its idempotency
key, and is looked for before it is made, so a retry after a lost answer finds the first instead
of making a second (already_done() asks the same question of an abandoned write):

    open_ticket   POST /rest/api/3/issue with the label `gatehouse-<hash of the key>`;
                  found by GET /rest/api/3/search/jql?jql=project = "<key>" AND labels = "<label>"
    add_comment   POST /rest/api/3/issue/<id>/comment with the comment property `gatehouse`
                  {"write": <label>}; found among the newest comments (expand=properties), newest
                  first, at most MAX_COMMENTS_SCANNED of them

A comment goes only to an issue of `project_key`: GET /rest/api/3/issue/<id>?fields=project is read
first, and an issue of another project is not found, as one that does not exist (the credential may
reach other projects; the server's ticketing is this one).

The search is /search/jql, not /rest/api/3/search, which Atlassian removed from Jira Cloud in 2025
(CHANGE-2046: it answers 410 Gone). Jira's search index can trail a create by a moment, so a retry
within that moment could still miss the first issue; a retry that follows a lost answer is seconds
later. A ticket's id is the issue's numeric id (the tools' ticket ids are numbers), its URL
<url>/browse/<issue key>. Failures are HttpBackend's, named `jira_*`; a 400's detail is Jira's
`errorMessages` and `errors`. This module runs in the server process without Django.
"""

import hashlib
from base64 import b64encode

import httpx2

from toolserver import schemas
from toolserver.adapters.base import (
    BackendError,
    CannotTell,
    Param,
    TargetNotFound,
    TicketingBackend,
    WriteContext,
    shaped,
)
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Comment, Ticket
from toolserver.envelope import BackendFailure

PROPERTY = "gatehouse"
COMMENTS_PAGE = 100
MAX_COMMENTS_SCANNED = 500


def _check_email(value: str) -> None:
    if ":" in value or any(ord(char) < 33 for char in value) or "@" not in value:
        raise ValueError("Email is the Atlassian account's address (no spaces nor colons).")


def write_label(idempotency_key: str) -> str:
    """The label (and comment property value) that marks the write with this key: no spaces, as Jira's labels."""
    return "gatehouse-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def document(*paragraphs: str) -> dict:
    """Text as an Atlassian Document Format document (v3 takes no plain text): one paragraph per line."""
    lines = [line for paragraph in paragraphs for line in paragraph.splitlines() if line.strip()]
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in lines],
    }


@register("ticketing", "jira")
class JiraTicketing(HttpBackend, TicketingBackend):
    source = "jira:issues"
    vendor = "jira"
    params = (
        Param(
            "project_key",
            "Project key",
            required=True,
            pattern=r"[A-Z][A-Z0-9_]{1,9}",
            help="the key of the project tickets are opened in, e.g. SEC (capitals, digits, _).",
        ),
        Param(
            "issue_type",
            "Issue type",
            pattern=r"[A-Za-z0-9][A-Za-z0-9 _-]{0,59}",
            help="the issue type's name, e.g. Task or Incident (blank: Task).",
        ),
        Param(
            "email",
            "Account email",
            validator=_check_email,
            help="With it the credential is that account's API token; blank, an OAuth 2.0 bearer token.",
        ),
    )

    def auth_headers(self) -> dict[str, str]:
        email = self.param("email")
        if not email:
            return super().auth_headers()
        return {"Authorization": "Basic " + b64encode(f"{email}:{self._credential}".encode()).decode()}

    @staticmethod
    def _detail(response: httpx2.Response) -> str:
        """Jira's refusal: `{"errorMessages": [...], "errors": {"field": "..."}}`."""
        try:
            body = response.json()
            messages = [str(message) for message in body.get("errorMessages") or []]
            messages += [f"{field}: {message}" for field, message in (body.get("errors") or {}).items()]
        except (ValueError, AttributeError, TypeError):
            messages = []
        return "; ".join(messages)[:300] if messages else HttpBackend._detail(response)

    async def health(self) -> str:
        me = await self._request("GET", "/rest/api/3/myself")
        if not isinstance(me.get("accountId"), str) or not isinstance(me.get("displayName"), str):
            raise BackendError(BackendFailure.MALFORMED)
        return f"signed in as {me['displayName'][:100]}"

    # -- tickets ---------------------------------------------------------------------------------
    def _ticket(self, issue: dict) -> dict:
        if not isinstance(issue.get("id"), str) or not isinstance(issue.get("key"), str):
            raise BackendError(BackendFailure.MALFORMED)
        return shaped(Ticket, {"ticket_id": issue["id"], "url": f"{self.url}/browse/{issue['key']}"})

    async def _find_ticket(self, write: WriteContext) -> dict | None:
        jql = f'project = "{self.param("project_key")}" AND labels = "{write_label(write.idempotency_key)}"'
        body = await self._request(
            "GET", "/rest/api/3/search/jql", params={"jql": jql, "fields": "summary", "maxResults": 1}
        )
        issues = body.get("issues")
        if not isinstance(issues, list) or not all(isinstance(issue, dict) for issue in issues):
            raise BackendError(BackendFailure.MALFORMED)
        return self._ticket(issues[0]) if issues else None

    async def open_ticket(self, args: schemas.OpenTicket, write: WriteContext) -> dict:
        found = await self._find_ticket(write)
        if found is not None:
            return found
        fields = {
            "project": {"key": self.param("project_key")},
            "issuetype": {"name": self.param("issue_type") or "Task"},
            "summary": args.title,
            "description": document(args.body, f"Severity: {args.severity}. Alert: {write.trigger}."),
            "labels": ["gatehouse", f"severity-{args.severity}", write_label(write.idempotency_key)],
        }
        return self._ticket(await self._write("/rest/api/3/issue", {"fields": fields}, write, target="ticket"))

    # -- comments --------------------------------------------------------------------------------
    async def _check_project(self, ticket_id: str) -> None:
        """TargetNotFound unless the issue is one of project_key's."""
        target = f"ticket {ticket_id}"
        issue = await self._request(
            "GET", f"/rest/api/3/issue/{ticket_id}", target=target, params={"fields": "project"}
        )
        fields = issue.get("fields")
        project = fields.get("project") if isinstance(fields, dict) else None
        key = project.get("key") if isinstance(project, dict) else None
        if not isinstance(key, str):
            raise BackendError(BackendFailure.MALFORMED)
        if key != self.param("project_key"):
            raise TargetNotFound(target)

    async def _find_comment(self, args: schemas.AddComment, write: WriteContext) -> tuple[dict | None, bool]:
        """(the comment carrying the write's mark, or None; whether every comment was looked at), on an
        issue of project_key only (TargetNotFound for another project's)."""
        await self._check_project(args.ticket_id)
        mark = {"key": PROPERTY, "value": {"write": write_label(write.idempotency_key)}}
        seen = 0
        while seen < MAX_COMMENTS_SCANNED:
            body = await self._request(
                "GET",
                f"/rest/api/3/issue/{args.ticket_id}/comment",
                target=f"ticket {args.ticket_id}",
                params={"startAt": seen, "maxResults": COMMENTS_PAGE, "orderBy": "-created", "expand": "properties"},
            )
            comments, total = body.get("comments"), body.get("total")
            if not isinstance(comments, list) or not isinstance(total, int):
                raise BackendError(BackendFailure.MALFORMED)
            for comment in comments:
                if isinstance(comment, dict) and mark in (comment.get("properties") or []):
                    return self._comment(args, comment), True
            seen += len(comments)
            if not comments or seen >= total:
                return None, True
        return None, False

    def _comment(self, args: schemas.AddComment, comment: dict) -> dict:
        if not isinstance(comment.get("id"), str):
            raise BackendError(BackendFailure.MALFORMED)
        return shaped(Comment, {"ticket_id": args.ticket_id, "comment_id": comment["id"]})

    async def add_comment(self, args: schemas.AddComment, write: WriteContext) -> dict:
        found, _ = await self._find_comment(args, write)
        if found is not None:
            return found
        payload = {
            "body": document(args.body),
            "properties": [{"key": PROPERTY, "value": {"write": write_label(write.idempotency_key)}}],
        }
        path = f"/rest/api/3/issue/{args.ticket_id}/comment"
        return self._comment(args, await self._write(path, payload, write, target=f"ticket {args.ticket_id}"))

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        """The write's mark, found on an issue (or a comment): it happened."""
        if tool == "open_ticket":
            found = await self._find_ticket(write)
        elif tool == "add_comment":
            found, complete = await self._find_comment(args, write)
            if found is None and not complete:
                raise CannotTell(tool)  # more comments than scanned: it may be older than those
        else:
            raise CannotTell(tool)
        return None if found is None else {**found, "found_done": True}
