"""The Jira Cloud adapter (toolserver/adapters/jira.py) against a stand-in of Jira's REST API v3
answering with its documented responses (tests/toolserver/vendor_standins.py): an issue opened
with the write's mark, found again instead of opened twice (after a lost answer, or by
already_done), comments likewise, and every failure a typed error named jira_*.

Each call goes through run_tool, what the ticketing server process runs per tool call.
"""

import asyncio
import base64
import json

import pytest

from tests.toolserver.test_adapter_contract import allow
from tests.toolserver.vendor_standins import JIRA_EMAIL
from toolserver.adapters.base import ParamError
from toolserver.adapters.jira import JiraTicketing, write_label
from toolserver.catalog import SERVERS
from toolserver.servers import META_CHECK_DONE, META_IDEMPOTENCY_KEY, META_TRIGGER, run_tool

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SPEC = SERVERS["ticketing"]
PARAMS = {"project_key": "SEC", "email": JIRA_EMAIL}
TICKET = {"title": "Phished user on WS-FIN-07", "body": "Line one of the findings.\nLine two.", "severity": "high"}


def run(jira, *calls: tuple[str, dict], key: str = "key-1", check: bool = False, **options) -> list[dict]:
    """Each (tool, arguments) through run_tool on one adapter, in order, under one idempotency key."""

    async def go():
        adapter = JiraTicketing(
            url=jira.url,
            credential=options.get("token", jira.token),
            timeout_s=options.get("timeout_s", 5),
            params=options.get("params", PARAMS),
        )
        meta = {META_IDEMPOTENCY_KEY: key, META_TRIGGER: "ALERT-7", **({META_CHECK_DONE: True} if check else {})}
        try:
            return [(await run_tool(SPEC, SPEC.tool(tool), adapter, args, meta))[0] for tool, args in calls]
        finally:
            await adapter.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def allowed(jira, monkeypatch):
    allow(monkeypatch, jira.url)


def test_contract_open_ticket_creates_an_issue_carrying_the_writes_mark(jira):
    (result,) = run(jira, ("open_ticket", TICKET))
    assert result["status"] == "ok", result
    assert result["data"] == {"ticket_id": "10001", "url": f"{jira.url}/browse/SEC-1"}
    (create,) = jira.creates
    basic = base64.b64encode(f"{JIRA_EMAIL}:{jira.token}".encode()).decode()
    assert create.headers["Authorization"] == f"Basic {basic}"
    fields = create.json()["fields"]
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == TICKET["title"] and write_label("key-1") in fields["labels"]
    paragraphs = [block["content"][0]["text"] for block in fields["description"]["content"]]
    assert paragraphs == ["Line one of the findings.", "Line two.", "Severity: high. Alert: ALERT-7."]
    (search,) = jira.seen("GET", "/rest/api/3/search/jql")  # looked for first, found nothing
    assert search.query["jql"] == [f'project = "SEC" AND labels = "{write_label("key-1")}"']


def test_contract_a_retry_after_a_lost_answer_finds_the_first_issue(jira):
    jira.lose("/rest/api/3/issue")  # Jira creates the issue; its answer never arrives
    lost, retried = run(jira, ("open_ticket", TICKET), ("open_ticket", TICKET))
    assert lost["reason"] == "jira_unavailable" and lost["retryable"] is True
    assert retried["status"] == "ok" and retried["data"]["ticket_id"] == "10001"
    assert len(jira.creates) == 1 and len(jira.issues) == 1
    (other,) = run(jira, ("open_ticket", TICKET), key="key-2")  # another write is another issue
    assert other["data"]["ticket_id"] == "10002" and len(jira.creates) == 2


def test_contract_already_done_finds_the_issue_by_its_label(jira):
    (before,) = run(jira, ("open_ticket", TICKET), check=True)
    assert before["data"] == {"check": "not_done"} and jira.creates == []
    run(jira, ("open_ticket", TICKET))
    (after,) = run(jira, ("open_ticket", TICKET), check=True)
    assert after["data"] == {
        "check": "done",
        "result": {"ticket_id": "10001", "url": f"{jira.url}/browse/SEC-1", "found_done": True},
    }
    assert len(jira.creates) == 1


def test_contract_a_comment_is_added_once_and_found_again(jira):
    run(jira, ("open_ticket", TICKET), key="ticket")
    comment = {"ticket_id": "10001", "body": "Host contained; awaiting forensics."}
    (before,) = run(jira, ("add_comment", comment), check=True)
    assert before["data"] == {"check": "not_done"}
    jira.lose("/rest/api/3/issue/10001/comment")
    lost, retried = run(jira, ("add_comment", comment), ("add_comment", comment))
    assert lost["reason"] == "jira_unavailable"
    assert retried["data"] == {"ticket_id": "10001", "comment_id": "20001"}
    assert len(jira.seen("POST", "/rest/api/3/issue/10001/comment")) == 1
    (after,) = run(jira, ("add_comment", comment), check=True)
    assert after["data"]["check"] == "done" and after["data"]["result"]["comment_id"] == "20001"
    (posted,) = jira.seen("POST", "/rest/api/3/issue/10001/comment")
    assert posted.json()["properties"] == [{"key": "gatehouse", "value": {"write": write_label("key-1")}}]


def test_contract_a_comment_on_a_missing_issue_is_not_found(jira):
    (result,) = run(jira, ("add_comment", {"ticket_id": "99999", "body": "A comment."}))
    assert result["reason"] == "not_found" and "ticket 99999" in result["guidance"]


def test_contract_a_comment_on_an_issue_of_another_project_is_not_found_and_nothing_is_written(jira):
    jira.issues.append({"id": "20001", "key": "HR-1", "fields": {"summary": "Payroll", "labels": []}})
    jira.comments["20001"] = []
    comment = {"ticket_id": "20001", "body": "A comment."}
    result, check = run(jira, ("add_comment", comment)) + run(jira, ("add_comment", comment), check=True)
    assert result["reason"] == "not_found" and "ticket 20001" in result["guidance"], result
    assert check["reason"] == "not_found", check
    assert [seen.path for seen in jira.requests] == ["/rest/api/3/issue/20001"] * 2  # its project read, no more
    assert jira.comments["20001"] == []


def test_contract_without_an_email_the_token_is_a_bearer_token(jira):
    (result,) = run(jira, ("open_ticket", TICKET), params={"project_key": "SEC", "issue_type": "Incident"})
    assert result["status"] == "ok"
    (create,) = jira.creates
    assert create.headers["Authorization"] == f"Bearer {jira.token}"
    assert create.json()["fields"]["issuetype"] == {"name": "Incident"}


@pytest.mark.parametrize(
    "path, status, body, reason",
    [  # which HTTP failure is which typed failure: test_adapter_contract's, over every adapter
        (
            "/rest/api/3/issue",
            403,
            {"errorMessages": ["You do not have permission to create issues in this project."]},
            "jira_forbidden",
        ),
        ("/rest/api/3/search/jql", 200, {"isLast": True}, "jira_malformed_response"),  # no issues in it
        ("/rest/api/3/issue", 201, {"self": "x"}, "jira_malformed_response"),  # no id or key in it
    ],
)
def test_contract_a_failure_is_a_typed_jira_error(jira, path, status, body, reason):
    jira.fail(path, status, body)
    (result,) = run(jira, ("open_ticket", TICKET))
    assert result["status"] == "error" and result["reason"] == reason, result
    assert jira.token not in str(result)


def test_contract_a_refusal_names_jiras_messages(jira):
    jira.fail("/rest/api/3/issue", 400, {"errorMessages": [], "errors": {"issuetype": "Specify a valid issue type"}})
    (result,) = run(jira, ("open_ticket", TICKET))
    assert result["reason"] == "invalid_arguments" and "issuetype: Specify a valid issue type" in result["guidance"]


@pytest.mark.parametrize("echo", ["header", "base64", "cut"])
def test_contract_a_refusal_quoting_the_credential_reaches_the_envelope_without_any_form_of_it(jira, echo):
    basic = base64.b64encode(f"{JIRA_EMAIL}:{jira.token}".encode()).decode()
    header = f"Basic {basic}"
    quoted = {  # a gateway in front of Jira that quotes the request it refused
        "header": f"bad request; headers={{'Authorization': '{header}'}}",
        "base64": "request: " + base64.b64encode(f"Authorization: {header}".encode()).decode(),
        "cut": "x" * 290 + jira.token,  # cut at 300 characters, mid-token
    }[echo]
    jira.fail("/rest/api/3/search/jql", 400, {"errorMessages": [quoted]})
    (result,) = run(jira, ("open_ticket", TICKET))
    assert result["reason"] == "invalid_arguments" and "[redacted" in result["guidance"], result
    text = json.dumps(result)
    for form in (jira.token, basic, base64.b64encode(jira.token.encode()).decode(), jira.token[:10]):
        assert form not in text


def test_contract_no_answer_within_the_timeout_is_jira_timeout(jira):
    jira.hold("/rest/api/3/search/jql")
    try:
        (result,) = run(jira, ("open_ticket", TICKET), timeout_s=0.5)
    finally:
        jira.release()
    assert result["reason"] == "jira_timeout" and result["retryable"] is True
    assert jira.creates == []


def test_contract_health_names_the_account(jira):
    async def go(token):
        adapter = JiraTicketing(url=jira.url, credential=token, timeout_s=5, params=PARAMS)
        try:
            return await adapter.health()
        finally:
            await adapter.aclose()

    assert asyncio.run(go(jira.token)) == "signed in as SOC Bot"
    with pytest.raises(Exception, match="forbidden"):
        asyncio.run(go("wrong-token"))


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"project_key": "sec"}, "Project key"),
        ({"project_key": 'SEC" OR project != "X'}, "Project key"),
        ({}, "Project key is required"),
        ({"project_key": "SEC", "issue_type": 'Task" AND'}, "Issue type"),
        ({"project_key": "SEC", "email": "bot:x@example.com"}, "Email"),
    ],
)
def test_the_parameters_are_strict(params, problem):
    with pytest.raises(ParamError, match=problem):
        JiraTicketing.check_params(params)


def test_contract_a_comments_mark_is_found_pages_back_and_beyond_the_scan_it_cannot_tell(jira, monkeypatch):
    run(jira, ("open_ticket", TICKET), key="ticket")
    comment = {"ticket_id": "10001", "body": "The first comment, marked."}
    run(jira, ("add_comment", comment))
    for number in range(250):  # newer comments, unmarked: the marked one is on the third page, newest first
        jira.comments["10001"].append({"id": str(30000 + number), "body": {}, "properties": []})
    (found,) = run(jira, ("add_comment", comment), check=True)
    assert found["data"]["check"] == "done" and found["data"]["result"]["comment_id"] == "20001"
    pages = jira.seen("GET", "/rest/api/3/issue/10001/comment")[-3:]
    assert [page.query["startAt"] for page in pages] == [["0"], ["100"], ["200"]]
    monkeypatch.setattr("toolserver.adapters.jira.MAX_COMMENTS_SCANNED", 200)
    (unknown,) = run(jira, ("add_comment", comment), check=True)
    assert unknown["data"] == {"check": "unknown"}
