"""The agent loop against a hostile or broken model (issue 13, items 5-8 and 15): a real HTTP
server speaking the streaming Messages API with scripted turns, reached through the anthropic
SDK, over the real tool servers and the lab."""

import contextlib
import json
import logging
import sys
from pathlib import Path

import pytest

from console.manage import administration
from investigations.approvals import services as approvals
from investigations.models import ActionRequest, AuditRecord, Event, Investigation
from investigations.runs import agent
from tests.investigations.hostile_model import (
    HostileModel,
    Turn,
    _end,
    _start,
    _tool_use,
    slow_turn,
    tool_turn,
    truncated_turn,
)
from tests.support import accept_as_listed
from toolserver.lab.models import Host
from toolserver.models import Tool
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hostile(received, settings):
    """investigate(*turns): the phishing story's investigation, run against a model that says `turns`."""
    with contextlib.ExitStack() as stack:

        def investigate(*turns: Turn, budget_seconds: int | None = None):
            model = stack.enter_context(HostileModel(list(turns)))
            settings.ANTHROPIC_API_KEY = "hostile-test-key"
            settings.ANTHROPIC_BASE_URL = model.url
            _, investigation = received("LAB-SIEM-1001")  # an alert about WS-FIN-07
            if budget_seconds is not None:
                Investigation.objects.filter(pk=investigation.pk).update(budget_seconds=budget_seconds)
            return model, run(investigation)

        yield investigate


def run(investigation: Investigation) -> Investigation:
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    return investigation


def calls_of(investigation: Investigation):
    return AuditRecord.objects.filter(correlation_id=investigation.correlation_id).order_by("seq")


def answers_in(body: dict) -> list[dict]:
    """The tool results the model was sent in the last message of a request."""
    return [block for block in body["messages"][-1]["content"] if block.get("type") == "tool_result"]


def envelope(answer: dict) -> dict:
    return json.loads(answer["content"])


# -- 5. a tool input that is not a JSON object ----------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [("get_host", ["DC-01"]), ("get_host", "DC-01"), ("get_host", None), ("get_host", 7), ("isolate_host", ["DC-01"])],
)
def test_a_tool_input_that_is_not_an_object_is_answered_with_a_typed_error_and_one_audit_record(
    hostile, tool, tool_input
):
    model, investigation = hostile(tool_turn(("toolu_notobject", tool, tool_input)))
    assert (investigation.status, investigation.summary) == ("completed", "The script ended.")
    (record,) = calls_of(investigation)
    assert (record.tool, record.tool_use_id, record.outcome, record.reason) == (
        tool,
        "toolu_notobject",
        "error",
        "invalid_arguments",
    )
    assert record.arguments == {}
    (answer,) = answers_in(model.requests[1])
    assert answer["is_error"] and envelope(answer)["reason"] == "invalid_arguments"
    assert "must be a JSON object" in envelope(answer)["guidance"]
    assert not ActionRequest.objects.filter(investigation=investigation).exists()
    call = investigation.events.get(kind=Event.Kind.TOOL_CALL)
    assert call.data["input"] == tool_input  # the transcript shows what the model sent
    sent = model.requests[1]["messages"][-2]["content"][-1]
    assert sent["input"] == {}  # and the API is sent only what it accepts


# -- 6. a reused tool_use_id ---------------------------------------------------------------------
def test_a_reused_tool_use_id_with_another_target_is_refused_audited_and_never_the_earlier_result(hostile, analyst):
    model, investigation = hostile(
        tool_turn(("toolu_reused", "isolate_host", {"host": "WS-FIN-07", "reason": "Phishing payload ran."})),
        tool_turn(("toolu_reused", "isolate_host", {"host": "DC-01", "reason": "Contain the domain."})),
    )
    assert investigation.status == "waiting"
    (request,) = investigation.action_requests.all()
    approvals.reject(request.pk, analyst, "Not in this test.")
    investigation = run(investigation)

    assert (investigation.status, investigation.summary) == ("completed", "The script ended.")
    assert list(investigation.action_requests.values_list("arguments__host", flat=True)) == ["WS-FIN-07"]
    (answer,) = answers_in(model.requests[2])
    assert envelope(answer)["reason"] == "invalid_tool_use_id"  # not the rejection of WS-FIN-07
    refused = calls_of(investigation).get(reason="invalid_tool_use_id")
    assert (refused.tool, refused.tool_use_id, refused.arguments["host"]) == ("isolate_host", "toolu_reused", "DC-01")
    shown = investigation.events.filter(kind=Event.Kind.TOOL_CALL, data__tool_use_id="toolu_reused")
    assert [event.data["input"]["host"] for event in shown] == ["WS-FIN-07", "DC-01"]
    assert investigation.tool_calls_used == 2  # it counted against the budget
    # The API is sent each id once: the reused call and its answer under a name of their own.
    sent = model.requests[2]["messages"]
    assert sent[-2]["content"][-1]["id"] == answer["tool_use_id"] != "toolu_reused"


def test_a_reused_tool_use_id_with_the_same_arguments_is_refused_too(hostile):
    """The id is the call's identity in the transcript, the trail and the action requests: a repeat
    is a new call that needs an id of its own, and a read now is not the read then."""
    look = ("toolu_same", "get_host", {"host": "WS-FIN-07"})
    _, investigation = hostile(tool_turn(look), tool_turn(look))
    first, second = calls_of(investigation)
    assert (first.outcome, second.outcome, second.reason) == ("ok", "error", "invalid_tool_use_id")
    assert investigation.events.filter(kind=Event.Kind.TOOL_CALL).count() == 2
    assert investigation.events.filter(kind=Event.Kind.TOOL_RESULT).count() == 2


# -- 7. stop_reason ---------------------------------------------------------------------------------
def test_a_turn_cut_at_max_tokens_mid_tool_call_is_not_acted_on_and_the_model_is_asked_again(hostile):
    # Cut while writing 12: the SDK's partial parse reads a complete-looking {"user": "j.doe", "lookback_hours": 1}.
    model, investigation = hostile(
        truncated_turn("toolu_cut", "search_logins", '{"user": "j.doe", "lookback_hours": 1')
    )
    assert (investigation.status, investigation.summary) == ("completed", "The script ended.")
    (record,) = calls_of(investigation)
    assert (record.tool_use_id, record.outcome, record.reason, record.backend_status) == (
        "toolu_cut",
        "error",
        "incomplete_turn",
        "",
    )
    (answer,) = answers_in(model.requests[1])
    assert answer["is_error"] and "max_tokens" in envelope(answer)["guidance"]
    assert investigation.messages[1]["stop_reason"] == "max_tokens"


def test_a_turn_cut_before_its_verdict_ends_inconclusive_with_the_reason(hostile):
    cut = Turn([_start(), *_end("max_tokens")])
    _, investigation = hostile(cut)
    assert (investigation.status, investigation.verdict) == ("completed", "inconclusive")
    assert investigation.end_reason == "The model's answer ended (stop reason max_tokens) before a verdict."


# -- 8. the wall-time budget during a turn ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["text", "ping"])
def test_the_time_budget_holds_during_a_slow_turn(hostile, kind):
    """A turn that would stream for 30 s against a 2 s budget: text the loop sees, or pings the SDK swallows."""
    model, investigation = hostile(slow_turn(kind=kind, frames=300, pace_s=0.1), budget_seconds=2)
    assert (investigation.status, investigation.verdict) == ("completed", "inconclusive")
    assert investigation.end_reason == "The time budget (2 s) is exhausted."
    assert model.hung_up.wait(timeout=15)  # the stream was cut, not waited out
    assert not model.finished.is_set()


# -- 15. a crash logs where, never the raw tool arguments ------------------------------------------
def test_a_crash_logs_where_it_failed_but_never_the_raw_tool_arguments(hostile, caplog):
    secret = "CANARY-ARGUMENT-5e1d"
    unreadable = Turn(
        [_start(), *_tool_use(0, "toolu_bad", "get_host", '{"host": "' + secret + '", :'), *_end("tool_use")]
    )
    with caplog.at_level(logging.INFO):
        _, investigation = hostile(unreadable)
    assert investigation.status == "failed"
    assert "investigation" in caplog.text and "ValueError" in caplog.text
    assert secret not in caplog.text


# -- 16. what no database stores: a NUL from the model, or from a backend --------------------------
NUL_LOG_SERVER = Path(__file__).with_name("nul_log_server.py")


def test_a_nul_the_model_writes_in_its_text_and_a_tool_input_fails_nothing(hostile):
    """jsonb holds no NUL: the turn's save (and the call's audit record with it) failed, and so did the
    investigation. It is kept as U+FFFD, the host then unknown to the schema."""
    model, investigation = hostile(
        tool_turn(("toolu_nul", "get_host", {"host": "WS-FIN-07\u0000"}), text="Look\u0000.")
    )
    assert investigation.status == "completed", investigation.end_reason
    (record,) = calls_of(investigation).filter(tool="get_host")
    assert (record.tool_use_id, record.outcome, record.reason) == ("toolu_nul", "error", "invalid_arguments")
    assert investigation.messages[1]["content"][0]["text"] == "Look\ufffd."
    assert "\\u0000" not in json.dumps(model.requests[1])


def test_a_nul_in_a_tool_result_is_kept_as_a_replacement_character_with_its_audit_record(hostile, admin_user):
    """A web server's log line holds what its client sent, a NUL too: keeping the result failed, and the
    audit record of a call that reached the backend was rolled back with it."""
    server = administration.register_external_server(
        admin_user, {"name": "logs", "command": sys.executable, "args": [str(NUL_LOG_SERVER)]}
    )
    administration.discover(server)
    accept_as_listed(Tool.objects.get(name="logs__tail"), admin_user, access="read")
    try:
        model, investigation = hostile(tool_turn(("toolu_tail", "logs__tail", {})))
    finally:
        get_supervisor().restart("logs")
    assert investigation.status == "completed", investigation.end_reason
    (record,) = calls_of(investigation).filter(tool="logs__tail")
    assert record.outcome == "ok"
    (answer,) = answers_in(model.requests[1])
    assert "admin\\ufffd'" in answer["content"] and "\\u0000" not in answer["content"]  # as JSON, escaped


# -- 17. a backend's name for a write's target that the tool's schema does not take --------------
def test_a_target_the_backend_names_outside_the_schema_is_asked_for_as_the_model_said_it(hostile):
    """An EDR names hosts as their users do ("Ana's MacBook"): re-parsing the write with that name raised
    out of the request, and the investigation failed instead of asking an analyst."""
    Host.objects.filter(host_id="H-1042").update(hostname="Ana's MacBook")
    _, investigation = hostile(tool_turn(("toolu_iso", "isolate_host", {"host": "H-1042", "reason": "Payload ran."})))
    assert investigation.status == "waiting", investigation.end_reason
    request = ActionRequest.objects.get(investigation=investigation, tool_use_id="toolu_iso")
    assert (request.state, request.arguments["host"]) == ("pending", "H-1042")
