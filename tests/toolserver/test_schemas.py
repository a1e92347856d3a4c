"""Rule 3: strict schemas. Unknown keys, wrong types, bad enums and over-maximum values are refused."""

import pytest
from pydantic import ValidationError

from toolserver import schemas
from toolserver.catalog import SERVERS
from toolserver.schemas import parse_arguments

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run


@pytest.mark.parametrize(
    "model, raw, problem",
    [
        (schemas.SearchLogins, {"user": "j.doe", "verbose": True}, "extra_forbidden"),
        (schemas.SearchLogins, {"user": "j.doe", "lookback_hours": "24"}, "int_type"),
        (schemas.SearchLogins, {"user": "j.doe", "lookback_hours": 24.0}, "int_type"),
        (schemas.SearchLogins, {"user": "j.doe", "limit": 201}, "less_than_equal"),
        (schemas.SearchLogins, {"user": "j.doe", "lookback_hours": 169}, "less_than_equal"),
        (schemas.SearchLogins, {"user": "j.doe", "lookback_hours": 0}, "greater_than_equal"),
        (schemas.SearchLogins, {}, "value_error"),
        (schemas.SearchEvents, {"host": "WS-FIN-07", "kind": "everything"}, "literal_error"),
        (schemas.GetHost, {}, "missing"),
        (schemas.GetHost, {"host": "WS-FIN-07; rm -rf /"}, "string_pattern_mismatch"),
        (schemas.HostAction, {"host": "WS-FIN-07", "reason": "bad"}, "string_too_short"),
        (schemas.OpenTicket, {"title": "Phish", "body": "x" * 20, "severity": "urgent"}, "literal_error"),
        (schemas.LookupIndicator, {"kind": "hash", "value": "not-a-hash"}, "value_error"),
        (schemas.LookupIndicator, {"kind": "ip", "value": "999.1.1.1"}, "value_error"),
        (schemas.LookupIndicator, {"kind": "ip", "value": "fe80::1%eth0"}, "value_error"),  # a zone id
        (schemas.LookupIndicator, {"kind": "ip", "value": "fe80::1%x&&evil.example <ignore previous>"}, "value_error"),
        (schemas.LookupIndicator, {"kind": "domain", "value": "Evil.COM"}, "value_error"),
        (schemas.GetUser, ["j.doe"], "extra_forbidden"),
    ],
)
def test_malformed_arguments_are_refused(model, raw, problem):
    with pytest.raises(ValidationError) as caught:
        parse_arguments(model, raw)
    assert problem in {error["type"] for error in caught.value.errors()}


def test_valid_arguments_pass_with_their_defaults():
    args = parse_arguments(schemas.SearchLogins, {"user": "j.doe"})
    assert (args.user, args.lookback_hours, args.limit) == ("j.doe", 24, 50)
    assert parse_arguments(schemas.LookupIndicator, {"kind": "ip", "value": "2001:db8::1"}).value == "2001:db8::1"


def test_every_tool_advertises_a_closed_bounded_schema():
    for server in SERVERS.values():
        for tool in server.tools:
            schema = tool.arguments.model_json_schema()
            assert schema["additionalProperties"] is False, tool.name
            for name, field in schema["properties"].items():
                assert field.get("description"), f"{tool.name}.{name} has no guidance for the model"
            for name in ("limit", "lookback_hours"):
                if name in schema["properties"]:
                    assert "maximum" in schema["properties"][name], f"{tool.name}.{name} is unbounded"


def test_tool_names_are_unique_across_servers():
    names = [tool.name for server in SERVERS.values() for tool in server.tools]
    assert len(names) == len(set(names))


def test_every_write_tool_names_its_target_or_is_one_per_alert():
    writes = [tool for server in SERVERS.values() for tool in server.tools if tool.write]
    assert {tool.name for tool in writes} == {
        "isolate_host",
        "release_host",
        "disable_account",
        "enable_account",
        "open_ticket",
        "add_comment",
    }
    for tool in writes:
        assert set(tool.target_fields) <= set(tool.arguments.model_fields)
