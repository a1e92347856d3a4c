"""The SIEM adapters for Splunk and Elasticsearch (toolserver/adapters/splunk.py, elastic.py), contract
tests against each vendor's documented responses served by a recorded stand-in on 127.0.0.1
(tests/toolserver/siem_stand_in.py): what each adapter asks for, how it maps the answer to our
shapes, that no argument can change the search, and each failure as the siem server's typed error
named after the vendor (through toolserver.servers.run_tool, the server's own call path)."""

import asyncio
import json
import re

import pytest

from tests.toolserver.siem_stand_in import recorded
from toolserver import egress, schemas
from toolserver.adapters.base import BackendRefused, ParamError
from toolserver.adapters.elastic import ElasticSiem
from toolserver.adapters.splunk import SplunkSiem, spl_string
from toolserver.catalog import SERVERS
from toolserver.servers import run_tool

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SIEM = SERVERS["siem"]
TOOLS = {tool.name: tool for tool in SIEM.tools}


@pytest.fixture
def splunk(splunk_api, monkeypatch):
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{splunk_api.port}")
    return splunk_api


@pytest.fixture
def elastic(elastic_api, monkeypatch):
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{elastic_api.port}")
    return elastic_api


def splunk_adapter(stand_in, *, credential: str | None = None, timeout_s: float = 5) -> SplunkSiem:
    return SplunkSiem(
        url=stand_in.url,
        credential=stand_in.credential if credential is None else credential,
        timeout_s=timeout_s,
        params={"index": "security"},
    )


def elastic_adapter(stand_in, *, credential: str | None = None, timeout_s: float = 5) -> ElasticSiem:
    return ElasticSiem(
        url=stand_in.url,
        credential=stand_in.credential if credential is None else credential,
        timeout_s=timeout_s,
        params={"index": "logs-*"},
    )


def calls(backend, *wanted: tuple[str, object]) -> list:
    """Each (method, args) in turn on one adapter, then closed."""

    async def run():
        try:
            return [await getattr(backend, method)(*([args] if args is not None else [])) for method, args in wanted]
        finally:
            await backend.aclose()

    return asyncio.run(run())


def through_the_server(backend, tool: str, arguments: dict) -> tuple[dict, str]:
    """The siem server's call path for one tool call: (envelope, backend status)."""

    async def run():
        try:
            return await run_tool(SIEM, TOOLS[tool], backend, arguments, {})
        finally:
            await backend.aclose()

    return asyncio.run(run())


def outside_quotes(spl: str) -> str:
    """The SPL with every quoted string (escapes honoured) replaced by "": what Splunk parses as syntax."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', spl)


# -- Splunk ------------------------------------------------------------------------------------------
def test_contract_splunk_logins_are_one_oneshot_search_over_the_window_mapped_to_logins(splunk):
    (page,) = calls(splunk_adapter(splunk), ("search_logins", schemas.SearchLogins(user="j.doe", lookback_hours=48)))
    (seen,) = splunk.searches()
    assert seen.path == "/services/search/jobs"
    assert seen.authorization == f"Bearer {splunk.credential}"
    assert {key: values[0] for key, values in seen.form.items()} == {
        "search": 'search index="security" tag=authentication '
        '(action="success" OR action="failure" OR action="blocked") user="j.doe" '
        "| head 51 | iplocation src | fields _time user dest host src Country action app",
        "exec_mode": "oneshot",
        "output_mode": "json",
        "earliest_time": "-48h",
        "latest_time": "now",
        "count": "51",
    }
    assert page.truncated is False
    assert page.items == [
        {
            "at": "2024-05-01T09:14:03.000+00:00",
            "user": "j.doe",
            "host": "WS-FIN-07",
            "source_ip": "203.0.113.7",
            "source_country": "Netherlands",
            "result": "success",
            "method": "win:remote",
        },
        {
            "at": "2024-05-01T09:12:41.000+00:00",
            "user": "j.doe",
            "host": "WS-FIN-07",
            "source_ip": "203.0.113.7",
            "source_country": "Netherlands",
            "result": "failure",
            "method": "win:remote",
        },
        {  # blocked is a failure; a multivalue field its first value; no dest: the host; no country: ""
            "at": "2024-04-30T08:02:17.000+00:00",
            "user": "j.doe",
            "host": "vpn01.corp.example",
            "source_ip": "198.51.100.23",
            "source_country": "",
            "result": "failure",
            "method": "vpn",
        },
    ]


def test_contract_splunk_events_filter_on_host_and_kind_and_map_eventtype_raw_and_sourcetype(splunk):
    args = schemas.SearchEvents(host="WS-FIN-07", kind="email_click", lookback_hours=24, limit=10)
    (page,) = calls(splunk_adapter(splunk), ("search_events", args))
    (seen,) = splunk.searches()
    assert seen.form["search"] == [
        'search index="security" (dest="WS-FIN-07" OR host="WS-FIN-07") eventtype="email_click" '
        "| head 11 | fields _time eventtype sourcetype user dest host _raw"
    ]
    assert (seen.form["earliest_time"], seen.form["count"]) == (["-24h"], ["11"])
    assert page.items == [
        {
            "at": "2024-05-01T09:03:55.000+00:00",
            "kind": "email_click",
            "host": "WS-FIN-07",
            "user": "j.doe",
            "summary": "2024-05-01 09:03:55 j.doe WS-FIN-07 GET http://invoice-update.example/login 200",
        },
        {
            "at": "2024-05-01T09:05:12.000+00:00",
            "kind": "WinEventLog:Security",
            "host": "WS-FIN-07",
            "user": "j.doe",
            "summary": "05/01/2024 09:05:12 AM LogName=Security EventCode=4688 New Process Name: "
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        },
    ]


def test_contract_splunk_answers_at_most_limit_results_and_says_it_truncated(splunk):
    (two, three) = calls(
        splunk_adapter(splunk),
        ("search_logins", schemas.SearchLogins(user="j.doe", limit=2)),
        ("search_logins", schemas.SearchLogins(user="j.doe", limit=3)),
    )
    assert (len(two.items), two.truncated) == (2, True)
    assert (len(three.items), three.truncated) == (3, False)
    assert [seen.form["count"] for seen in splunk.searches()] == [["3"], ["4"]]


def test_contract_a_splunk_login_without_a_user_is_kept_with_an_empty_user_not_a_failed_page(splunk):
    body = json.loads(recorded("splunk_oneshot_logins.json"))
    del body["results"][0]["user"]
    splunk.override_body["splunk_oneshot_logins.json"] = json.dumps(body).encode()
    (page,) = calls(splunk_adapter(splunk), ("search_logins", schemas.SearchLogins(host="WS-FIN-07")))
    assert [item["user"] for item in page.items] == ["", "j.doe", "j.doe"]


def test_contract_a_splunk_multivalue_action_is_read_as_its_value_the_search_matched(splunk):
    body = json.loads(recorded("splunk_oneshot_logins.json"))
    body["results"][0]["action"] = ["weird", "success"]  # the search matched its second value
    body["results"][1]["action"] = ["failure", "success"]
    splunk.override_body["splunk_oneshot_logins.json"] = json.dumps(body).encode()
    (page,) = calls(splunk_adapter(splunk), ("search_logins", schemas.SearchLogins(user="j.doe")))
    assert [item["result"] for item in page.items] == ["success", "failure", "failure"]
    assert page.truncated is False


def test_contract_a_splunk_result_that_fits_no_login_is_left_out_and_the_page_says_truncated(splunk):
    body = json.loads(recorded("splunk_oneshot_logins.json"))
    body["results"][0]["action"] = "weird"
    body["results"][1]["_time"] = None
    splunk.override_body["splunk_oneshot_logins.json"] = json.dumps(body).encode()
    envelope, _ = through_the_server(splunk_adapter(splunk), "search_logins", {"user": "j.doe"})
    assert envelope["status"] == "ok" and envelope["truncated"] is True, envelope
    assert [item["at"] for item in envelope["data"]] == ["2024-04-30T08:02:17.000+00:00"]


def test_contract_splunk_check_connection_reads_server_info_with_the_token(splunk):
    (said,) = calls(splunk_adapter(splunk), ("health", None))
    assert said == "Splunk 9.2.1 (splunk-sh1), the token is valid"
    (seen,) = splunk.requests
    assert (seen.method, seen.path, seen.query) == ("GET", "/services/server/info", {"output_mode": ["json"]})


@pytest.mark.parametrize(
    "user",
    [
        'j.doe" | delete',
        'x" OR index=_audit OR user="y',
        "j.doe | outputlookup stolen.csv",
        'a\\" | rest /services/authentication/users | "',
        "j.doe] | [search index=_internal",
    ],
)
def test_contract_an_argument_with_quotes_or_pipes_cannot_inject_spl(splunk, user):
    # At the server's boundary the strict schema refuses it: nothing reaches Splunk.
    envelope, status = through_the_server(splunk_adapter(splunk), "search_logins", {"user": user})
    assert (envelope["status"], envelope["reason"], status) == ("error", "invalid_arguments", "")
    assert splunk.requests == []
    # Past the schema (an adapter called directly), it is one quoted string: the search's syntax is unchanged.
    (page,) = calls(
        splunk_adapter(splunk),
        ("search_logins", schemas.SearchLogins.model_construct(user=user, host=None, lookback_hours=24, limit=5)),
    )
    (seen,) = splunk.searches()
    search = seen.form["search"][0]
    assert f"user={spl_string(user)}" in search
    assert outside_quotes(search) == (
        'search index="" tag=authentication (action="" OR action="" OR action="") user="" '
        "| head 6 | iplocation src | fields _time user dest host src Country action app"
    )
    assert page.items  # answered as any search


@pytest.mark.parametrize("value", ["*", "j.*", "a\nb", "x\x00"])
def test_a_wildcard_or_control_character_is_refused_before_splunk_is_asked(splunk, value):
    with pytest.raises(BackendRefused):
        calls(
            splunk_adapter(splunk),
            (
                "search_events",
                schemas.SearchEvents.model_construct(user=value, host=None, kind=None, lookback_hours=24, limit=5),
            ),
        )
    assert splunk.requests == []


@pytest.mark.parametrize("index", ["main | delete", "_internal", "Main", "main,security", 'main"', "-x", ""])
def test_a_splunk_index_not_in_the_strict_form_is_refused_naming_the_field_never_the_value(index):
    with pytest.raises(ParamError) as refused:
        SplunkSiem(url="https://splunk.example:8089", credential="t", timeout_s=1, params={"index": index})
    assert "Index" in str(refused.value)
    assert not index or index not in str(refused.value)


# -- Elasticsearch -----------------------------------------------------------------------------------
def test_contract_elastic_logins_are_one_ecs_search_over_the_window_mapped_to_logins(elastic):
    args = schemas.SearchLogins(user="j.doe", host="WS-FIN-07", lookback_hours=72, limit=20)
    (page,) = calls(elastic_adapter(elastic), ("search_logins", args))
    (seen,) = elastic.searches()
    assert (seen.path, seen.authorization) == ("/logs-*/_search", f"ApiKey {elastic.credential}")
    assert seen.json() == {
        "size": 20,
        "track_total_hits": 21,
        "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}],
        "_source": [
            "@timestamp",
            "user.name",
            "host.name",
            "host.hostname",
            "host.id",
            "source.ip",
            "source.geo.country_iso_code",
            "event.outcome",
            "event.action",
        ],
        "query": {
            "bool": {
                "filter": [
                    {"range": {"@timestamp": {"gte": "now-72h", "lte": "now"}}},
                    {"term": {"user.name": "j.doe"}},
                    {
                        "bool": {
                            "should": [
                                {"term": {"host.name": "WS-FIN-07"}},
                                {"term": {"host.hostname": "WS-FIN-07"}},
                                {"term": {"host.id": "WS-FIN-07"}},
                            ],
                            "minimum_should_match": 1,
                        }
                    },
                    {"term": {"event.category": "authentication"}},
                    {"terms": {"event.outcome": ["success", "failure"]}},
                ]
            }
        },
    }
    assert page.truncated is False
    assert page.items == [
        {
            "at": "2024-05-01T09:14:03.000Z",
            "user": "j.doe",
            "host": "WS-FIN-07",
            "source_ip": "203.0.113.7",
            "source_country": "NL",
            "result": "success",
            "method": "logged-in",
        },
        {  # dotted field names and host.id read as well
            "at": "2024-05-01T09:12:41.000Z",
            "user": "j.doe",
            "host": "H-1042",
            "source_ip": "203.0.113.7",
            "source_country": "",
            "result": "failure",
            "method": "ssh_login",
        },
    ]


def test_contract_elastic_events_filter_on_the_kind_and_map_action_and_message(elastic):
    (page,) = calls(
        elastic_adapter(elastic), ("search_events", schemas.SearchEvents(user="j.doe", kind="process_start"))
    )
    (seen,) = elastic.searches()
    assert seen.json()["query"]["bool"]["filter"][-1] == {"term": {"event.action": "process_start"}}
    assert (seen.json()["size"], seen.json()["track_total_hits"]) == (50, 51)
    assert page.items[0] == {
        "at": "2024-05-01T09:05:12.000Z",
        "kind": "process_start",
        "host": "WS-FIN-07",
        "user": "j.doe",
        "summary": "Endpoint process event: powershell.exe -enc SQBFAFgA",
    }
    assert page.truncated is False


def test_contract_elastic_says_truncated_when_the_total_counted_passes_the_hits(elastic):
    body = json.loads(recorded("elastic_search_events.json"))
    body["hits"]["total"] = {"value": 3, "relation": "gte"}  # track_total_hits stopped counting at limit + 1
    elastic.override_body["elastic_search_events.json"] = json.dumps(body).encode()
    (page,) = calls(elastic_adapter(elastic), ("search_events", schemas.SearchEvents(user="j.doe", limit=2)))
    assert (len(page.items), page.truncated) == (2, True)


def test_contract_elastic_answers_at_most_limit_hits_though_it_was_sent_more(elastic):
    body = json.loads(recorded("elastic_search_logins.json"))
    body["hits"]["hits"] *= 3  # 6 hits, total 2: `size` not heeded (a proxy, another version)
    elastic.override_body["elastic_search_logins.json"] = json.dumps(body).encode()
    (page,) = calls(elastic_adapter(elastic), ("search_logins", schemas.SearchLogins(user="j.doe", limit=1)))
    assert (len(page.items), page.truncated) == (1, True)


def test_contract_a_backends_huge_string_reaches_the_envelope_cut_to_a_thousand_characters(elastic):
    body = json.loads(recorded("elastic_search_logins.json"))
    body["hits"]["hits"][0]["_source"]["user"]["name"] = "x" * 1_000_000
    elastic.override_body["elastic_search_logins.json"] = json.dumps(body).encode()
    envelope, _ = through_the_server(elastic_adapter(elastic), "search_logins", {"host": "WS-FIN-07"})
    assert [len(item["user"]) for item in envelope["data"]] == [1000, len("j.doe")]
    assert len(json.dumps(envelope)) < 3000


def test_contract_a_credential_the_answer_quotes_across_the_cut_leaves_no_part_of_itself(elastic):
    """Redacted before a string is cut: cut first, the token's first part would pass, matching no form of it."""
    body = json.loads(recorded("elastic_search_logins.json"))
    body["hits"]["hits"][0]["_source"]["user"]["name"] = "x" * 980 + f"key={elastic.credential}"
    elastic.override_body["elastic_search_logins.json"] = json.dumps(body).encode()
    envelope, _ = through_the_server(elastic_adapter(elastic), "search_logins", {"host": "WS-FIN-07"})
    shown = envelope["data"][0]["user"]
    assert shown.startswith("x" * 980 + "key=[redacted") and elastic.credential[:8] not in json.dumps(envelope)


def test_contract_an_elastic_event_with_no_kind_is_left_out_and_the_page_says_truncated(elastic):
    body = json.loads(recorded("elastic_search_events.json"))
    del body["hits"]["hits"][0]["_source"]["event"]  # a plain log line: no event.action, category or kind
    elastic.override_body["elastic_search_events.json"] = json.dumps(body).encode()
    envelope, _ = through_the_server(elastic_adapter(elastic), "search_events", {"user": "j.doe"})
    assert envelope["status"] == "ok" and envelope["truncated"] is True, envelope
    assert len(envelope["data"]) == 1


def test_contract_elastic_check_connection_searches_the_index_pattern_for_nothing(elastic):
    (said,) = calls(elastic_adapter(elastic), ("health", None))
    assert said == "index pattern logs-* readable (3 shards), the API key is valid"
    (seen,) = elastic.requests
    assert (seen.path, seen.json()["size"]) == ("/logs-*/_search", 0)


def test_contract_an_argument_reaches_elasticsearch_only_as_an_exact_term(elastic):
    user = 'j.doe" OR *:* | {"match_all": {}}'
    calls(
        elastic_adapter(elastic),
        ("search_logins", schemas.SearchLogins.model_construct(user=user, host=None, lookback_hours=24, limit=5)),
    )
    (seen,) = elastic.searches()
    assert seen.json()["query"]["bool"]["filter"][1] == {"term": {"user.name": user}}
    assert "query_string" not in json.dumps(seen.json())


@pytest.mark.parametrize("index", ["logs-* | x", ".security", "_all", "-logs", "logs/../_cluster", "Logs", ""])
def test_an_elastic_index_pattern_not_in_the_strict_form_is_refused(index):
    with pytest.raises(ParamError) as refused:
        ElasticSiem(url="https://es.example:9200", credential="k", timeout_s=1, params={"index": index})
    assert "Index pattern" in str(refused.value)


# -- failures, as the siem server answers them ----------------------------------------------------------
VENDOR_ERRORS = {
    "splunk": json.dumps({"messages": [{"type": "FATAL", "text": "Error in 'search' command: Unable to parse"}]}),
    "elastic": json.dumps(
        {"error": {"type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400}
    ),
}


@pytest.mark.parametrize(
    "vendor, answer, reason, retryable, status",
    [  # which HTTP failure is which typed failure: test_adapter_contract's, over every adapter
        ("splunk", (429, b"{}", {"Retry-After": "7"}), "rate_limited", True, "429"),
        ("elastic", (200, b'{"hits": "none"}', {}), "malformed_response", False, "malformed_response"),
    ],
)
def test_contract_an_http_failure_is_a_typed_error_named_after_the_vendor(
    vendor, answer, reason, retryable, status, request, monkeypatch
):
    stand_in = request.getfixturevalue(f"{vendor}_api")
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{stand_in.port}")
    stand_in.fail("*", *answer, sticky=True)
    backend = splunk_adapter(stand_in) if vendor == "splunk" else elastic_adapter(stand_in)
    envelope, backend_status = through_the_server(backend, "search_logins", {"user": "j.doe"})
    assert (envelope["status"], envelope["reason"], envelope["retryable"]) == ("error", f"{vendor}_{reason}", retryable)
    assert backend_status == status  # what the audit record keeps
    assert ("retry_after_s" in envelope) == (reason == "rate_limited")
    if reason == "rate_limited":
        assert envelope["retry_after_s"] == 7
    assert stand_in.credential not in json.dumps(envelope)


@pytest.mark.parametrize("vendor", ["splunk", "elastic"])
def test_contract_a_wrong_credential_is_forbidden_with_the_vendors_401(vendor, request, monkeypatch):
    stand_in = request.getfixturevalue(f"{vendor}_api")
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{stand_in.port}")
    make = splunk_adapter if vendor == "splunk" else elastic_adapter
    envelope, status = through_the_server(make(stand_in, credential="not-the-key"), "search_events", {"user": "j.doe"})
    assert (envelope["reason"], envelope["retryable"], status) == (f"{vendor}_forbidden", False, "401")
    assert "not-the-key" not in json.dumps(envelope)


@pytest.mark.parametrize("vendor", ["splunk", "elastic"])
def test_contract_a_400_is_invalid_arguments_with_the_vendors_own_message(vendor, request, monkeypatch):
    stand_in = request.getfixturevalue(f"{vendor}_api")
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{stand_in.port}")
    stand_in.fail("*", 400, VENDOR_ERRORS[vendor].encode(), sticky=True)
    make = splunk_adapter if vendor == "splunk" else elastic_adapter
    envelope, status = through_the_server(make(stand_in), "search_logins", {"user": "j.doe"})
    assert (envelope["reason"], status) == ("invalid_arguments", "400")
    expected = "Unable to parse" if vendor == "splunk" else "all shards failed"
    assert expected in envelope["guidance"]


@pytest.mark.parametrize("vendor", ["splunk", "elastic"])
def test_contract_a_search_that_does_not_answer_in_time_is_a_timeout(vendor, request, monkeypatch):
    stand_in = request.getfixturevalue(f"{vendor}_api")
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{stand_in.port}")
    stand_in.hold()  # unanswered until the stand-in closes
    make = splunk_adapter if vendor == "splunk" else elastic_adapter
    envelope, _ = through_the_server(make(stand_in, timeout_s=0.5), "search_logins", {"user": "j.doe"})
    assert (envelope["reason"], envelope["retryable"]) == (f"{vendor}_timeout", True)


def test_contract_a_splunk_search_that_did_not_run_is_not_an_empty_success(splunk):
    splunk.fail(
        "*",
        200,
        json.dumps(
            {"preview": False, "messages": [{"type": "FATAL", "text": "Search halted"}], "results": []}
        ).encode(),
    )
    envelope, _ = through_the_server(splunk_adapter(splunk), "search_logins", {"user": "j.doe"})
    assert (envelope["status"], envelope["reason"]) == ("error", "splunk_unavailable")
