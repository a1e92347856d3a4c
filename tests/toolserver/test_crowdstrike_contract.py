"""The CrowdStrike Falcon adapter (toolserver/adapters/crowdstrike.py) against a stand-in of the Falcon
API answering with its documented responses (tests/toolserver/vendor_standins.py): the OAuth2 token,
the host found by hostname, containment sent once and never for a host already contained, its
status read for an abandoned write, and every failure a typed error named crowdstrike_*.

Each call goes through run_tool, what the edr-response server process runs per tool call, so what
is asserted is the envelope the model would get.
"""

import asyncio

import pytest

from tests.toolserver.test_adapter_contract import allow
from tests.toolserver.vendor_standins import FALCON_CLIENT_ID
from toolserver.adapters.base import ParamError
from toolserver.adapters.crowdstrike import CrowdStrikeEdrResponse, fql_string
from toolserver.catalog import SERVERS
from toolserver.lab.estate import PHISHED_HOST
from toolserver.servers import META_CHECK_DONE, META_IDEMPOTENCY_KEY, META_TRIGGER, run_tool

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SPEC = SERVERS["edr-response"]
REASON = "Contract test: the host beacons to a known C2 address."


def backend(falcon, *, secret: str | None = None, timeout_s: float = 5) -> CrowdStrikeEdrResponse:
    return CrowdStrikeEdrResponse(
        url=falcon.url,
        credential=falcon.secret if secret is None else secret,
        timeout_s=timeout_s,
        params={"client_id": FALCON_CLIENT_ID},
    )


def run(falcon, *calls: tuple[str, dict], check: bool = False, **options) -> list[dict]:
    """Each (tool, arguments) through run_tool on one adapter (so one token), in order: the envelopes."""

    async def go():
        adapter = backend(falcon, **options)
        meta = {META_IDEMPOTENCY_KEY: "key-1", META_TRIGGER: "ALERT-1", **({META_CHECK_DONE: True} if check else {})}
        try:
            return [(await run_tool(SPEC, SPEC.tool(tool), adapter, args, meta))[0] for tool, args in calls]
        finally:
            await adapter.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def allowed(falcon, monkeypatch):
    allow(monkeypatch, falcon.url)


def isolate(host: str = PHISHED_HOST) -> tuple[str, dict]:
    return "isolate_host", {"host": host, "reason": REASON}


def release(host: str = PHISHED_HOST) -> tuple[str, dict]:
    return "release_host", {"host": host, "reason": REASON}


def test_contract_isolate_finds_the_host_by_hostname_and_contains_it_once(falcon):
    device = falcon.device(PHISHED_HOST)
    (result,) = run(falcon, isolate())
    assert result["status"] == "ok", result
    assert result["data"]["host_id"] == device["device_id"] and result["data"]["isolated"] is True
    assert result["data"]["already_isolated"] is False and result["data"]["action_id"]
    (token,) = falcon.seen("POST", "/oauth2/token")
    assert token.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "client_secret=" in token.body.decode() and f"client_id={FALCON_CLIENT_ID}" in token.body.decode()
    (query,) = falcon.seen("GET", "/devices/queries/devices/v1")
    assert query.query["filter"] == [f"hostname:'{PHISHED_HOST}'"]
    (action,) = falcon.actions
    assert action.query["action_name"] == ["contain"] and action.json() == {"ids": [device["device_id"]]}
    assert action.headers["Authorization"] == f"Bearer {next(iter(falcon.tokens))}"
    assert action.headers["Idempotency-Key"] == "key-1"
    assert device["status"] == "containment_pending"


def test_contract_an_already_contained_host_gets_no_second_action(falcon):
    falcon.add("WS-HR-02", status="contained")
    (first,) = run(falcon, isolate("WS-HR-02"))
    assert first["status"] == "ok" and first["data"]["already_isolated"] is True and first["data"]["isolated"]
    assert falcon.actions == []  # WS-HR-02 was contained: nothing sent
    (second,) = run(falcon, isolate(PHISHED_HOST))
    assert second["data"]["already_isolated"] is False and len(falcon.actions) == 1
    (again,) = run(falcon, isolate(PHISHED_HOST))  # now containment_pending: done, not sent again
    assert again["data"]["already_isolated"] is True and len(falcon.actions) == 1


def test_contract_release_lifts_containment_and_not_twice(falcon):
    falcon.device(PHISHED_HOST)["status"] = "contained"
    released, again = run(falcon, release(), release())
    assert released["data"] == {
        "host_id": falcon.device(PHISHED_HOST)["device_id"],
        "isolated": False,
        "action_id": released["data"]["action_id"],
        "already_isolated": False,
        "already_released": False,
    }
    assert again["data"]["already_released"] is True
    (action,) = falcon.actions
    assert action.query["action_name"] == ["lift_containment"]


def test_contract_already_done_reads_the_hosts_containment_status(falcon):
    (before,) = run(falcon, isolate(), check=True)
    assert before["data"] == {"check": "not_done"} and falcon.actions == []
    falcon.device(PHISHED_HOST)["status"] = "containment_pending"  # the abandoned write had reached Falcon
    (after,) = run(falcon, isolate(), check=True)
    assert after["data"]["check"] == "done" and after["data"]["result"]["isolated"] is True
    (release_check,) = run(falcon, release(), check=True)
    assert release_check["data"] == {"check": "not_done"} and falcon.actions == []


def test_contract_one_token_serves_many_calls_and_a_revoked_one_is_replaced_once(falcon):
    results = run(falcon, isolate(), isolate(), release())
    assert [result["status"] for result in results] == ["ok"] * 3
    assert len(falcon.seen("POST", "/oauth2/token")) == 1
    falcon.tokens.clear()  # revoked: the next call is answered 401, then works with a new token
    (result,) = run(falcon, release())
    assert result["status"] == "ok" and len(falcon.seen("POST", "/oauth2/token")) == 2


def test_contract_a_wrong_secret_is_crowdstrike_forbidden_and_nothing_is_acted_on(falcon):
    (result,) = run(falcon, isolate(), secret="not-the-secret")
    assert result["reason"] == "crowdstrike_forbidden" and result["retryable"] is False
    assert falcon.actions == [] and falcon.seen("GET", "/devices/queries/devices/v1") == []


def test_contract_an_unknown_host_is_not_found_and_an_ambiguous_one_is_refused(falcon):
    falcon.add("WS-DUP-01")
    falcon.add("ws-dup-01")
    unknown, ambiguous = run(falcon, isolate("WS-NOPE-99"), isolate("WS-DUP-01"))
    assert unknown["reason"] == "not_found" and "WS-NOPE-99" in unknown["guidance"]
    assert ambiguous["reason"] == "invalid_arguments" and "device id" in ambiguous["guidance"]
    aid = falcon.device("WS-DUP-01")["device_id"]
    (by_id,) = run(falcon, isolate(aid.upper()))  # an AID, however it is cased
    assert falcon.seen("GET", "/devices/queries/devices/v1")[-1].query["filter"] == [f"device_id:'{aid}'"]
    assert by_id["status"] == "ok" and falcon.actions[0].json() == {"ids": [aid]}


@pytest.mark.parametrize(
    "path, status, body, reason",
    [  # which HTTP failure is which typed failure: test_adapter_contract's, over every adapter
        ("/oauth2/token", 401, {"errors": [{"code": 401, "message": "access denied"}]}, "crowdstrike_forbidden"),
        ("/oauth2/token", 201, {"token_type": "bearer"}, "crowdstrike_malformed_response"),  # no token in it
        ("/devices/entities/devices-actions/v2", 503, b"<html>Service Unavailable</html>", "crowdstrike_unavailable"),
    ],
)
def test_contract_a_failure_is_a_typed_crowdstrike_error(falcon, path, status, body, reason):
    falcon.fail(path, status, body)
    (result,) = run(falcon, isolate())
    assert result["status"] == "error" and result["reason"] == reason, result
    assert falcon.secret not in str(result)


def test_contract_a_refusal_names_falcons_message(falcon):
    falcon.fail("/devices/entities/devices-actions/v2", 400, {"errors": [{"code": 400, "message": "Invalid ids"}]})
    (result,) = run(falcon, isolate())
    assert result["reason"] == "invalid_arguments" and "Invalid ids" in result["guidance"]


@pytest.mark.parametrize(
    "errors, said",
    [
        ({"code": 400, "message": "bad filter"}, "bad filter"),  # one object, not a list
        (400, "the backend refused the request"),
        ("bad", "the backend refused the request"),
        ([], "the backend refused the request"),
        (["bad"], "the backend refused the request"),
        (None, "the backend refused the request"),
    ],
)
def test_contract_a_refusal_whatever_its_errors_is_invalid_arguments(falcon, errors, said):
    falcon.fail("/devices/entities/devices-actions/v2", 400, {"errors": errors})
    (result,) = run(falcon, isolate())
    assert result["reason"] == "invalid_arguments" and said in result["guidance"], result


def test_contract_a_refusal_quoting_the_oauth_token_reaches_the_envelope_without_it(falcon, monkeypatch):
    answer = falcon.answer

    def echo(seen):  # a gateway in front of Falcon that quotes the request it refused
        if seen.path == "/devices/queries/devices/v1":
            return 400, {"errors": [{"code": 400, "message": f"bad request; {seen.authorization}"}]}, {}
        return answer(seen)

    monkeypatch.setattr(falcon, "answer", echo)
    (result,) = run(falcon, isolate())
    (token,) = falcon.tokens
    assert result["reason"] == "invalid_arguments" and "[redacted credential]" in result["guidance"], result
    assert token not in str(result)


def test_contract_no_answer_within_the_timeout_is_crowdstrike_timeout(falcon):
    falcon.hold("/devices/queries/devices/v1")
    try:
        (result,) = run(falcon, isolate(), timeout_s=0.5)
    finally:
        falcon.release()
    assert result["reason"] == "crowdstrike_timeout" and result["retryable"] is True
    assert falcon.actions == []


def test_the_client_id_is_checked_and_host_names_are_escaped_in_fql():
    with pytest.raises(ParamError, match="API client ID"):
        CrowdStrikeEdrResponse.check_params({"client_id": "not-an-id'"})
    with pytest.raises(ParamError, match="API client ID is required"):
        CrowdStrikeEdrResponse.check_params({})
    assert fql_string("a'b\\c") == "'a\\'b\\\\c'"


def test_contract_health_reads_hosts_with_the_token(falcon):
    async def go():
        adapter = backend(falcon)
        try:
            return await adapter.health()
        finally:
            await adapter.aclose()

    assert asyncio.run(go()) == "the API client is valid and reads hosts (1 in this CID)"
