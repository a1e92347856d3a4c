"""The reads one model turn asks for together are made at the same time (issue 20), at most
PARALLEL_READS at once: each answered in the calls' order and audited once, the tool-call budget
held exactly; a write still waits for its analyst. (A worker killed while they run resumes making
none that completed: tests/investigations/test_workers.py.)

Overlap is proven by an external server whose tool answers only once three calls are inside it
together (gather_server.py): calls made one after another wait out its bound and say they never met.
"""

import sys
from pathlib import Path

import pytest

from console.manage import administration
from investigations.models import Investigation
from investigations.runs.offline_model.playbook import read_envelope
from tests.investigations.hostile_model import tool_turn
from tests.investigations.test_agent_loop import set_budgets
from tests.investigations.test_hostile_model import answers_in, calls_of, hostile  # noqa: F401 - the fixture
from tests.support import accept_as_listed
from toolserver.models import Tool
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

GATHER_SERVER = Path(__file__).with_name("gather_server.py")
PARTY = ("a", "b", "c")


@pytest.fixture
def gather(admin_user):
    """gather__gather, a read, answering once three calls are inside it at once: `gather(bound_s)`. A bound
    long enough for calls made together to meet on a loaded machine; a short one where they must not."""

    def register(bound_s: float) -> None:
        args = [str(GATHER_SERVER), str(len(PARTY)), str(bound_s)]
        server = administration.register_external_server(
            admin_user, {"name": "gather", "command": sys.executable, "args": args}
        )
        administration.discover(server)
        accept_as_listed(Tool.objects.get(name="gather__gather"), admin_user, access="read")

    yield register
    get_supervisor().restart("gather")


def gathering() -> list[tuple[str, str, dict]]:
    return [(f"toolu_{who}", "gather__gather", {"who": who}) for who in PARTY]


def test_the_reads_of_a_turn_are_made_together_answered_in_order_and_audited_once(hostile, gather):
    gather(bound_s=10)
    model, investigation = hostile(tool_turn(*gathering()))
    assert investigation.status == "completed"
    answers = answers_in(model.requests[1])
    assert [answer["tool_use_id"] for answer in answers] == ["toolu_a", "toolu_b", "toolu_c"]
    answered = [read_envelope(answer["content"])["data"] for answer in answers]
    assert answered == [{"who": who, "met": True} for who in PARTY]  # all three were inside at once
    records = calls_of(investigation).filter(tool="gather__gather")
    assert sorted(records.values_list("tool_use_id", flat=True)) == ["toolu_a", "toolu_b", "toolu_c"]
    assert investigation.tool_calls_used == 3
    results = investigation.events.filter(kind="tool_result").values_list("data__tool_use_id", flat=True)
    assert sorted(results) == ["toolu_a", "toolu_b", "toolu_c"]


def test_no_more_reads_than_parallel_reads_are_made_at_once(hostile, gather, settings):
    settings.PARALLEL_READS = 2
    gather(bound_s=1)  # two at a time can never be three: waiting longer shows nothing more
    model, _ = hostile(tool_turn(*gathering()))
    answered = [read_envelope(answer["content"])["data"]["met"] for answer in answers_in(model.requests[1])]
    assert answered == [False, False, True]  # the first two waited out the bound; the third came after them


def test_a_read_waiting_for_its_place_is_not_made_once_the_time_budget_ran_out(hostile, gather, settings):
    """The time budget is checked as each read starts, not only before the turn's reads: one after another,
    each waiting out the gather's 3 s bound, the third would start past the 5 s budget, and is never made."""
    settings.PARALLEL_READS = 1
    gather(bound_s=3)
    model, investigation = hostile(tool_turn(*gathering()), budget_seconds=5)
    assert (investigation.status, investigation.verdict) == ("completed", "inconclusive")
    assert investigation.end_reason == "The time budget (5 s) is exhausted."
    made = sorted(calls_of(investigation).filter(tool="gather__gather").values_list("tool_use_id", flat=True))
    assert made in (["toolu_a"], ["toolu_a", "toolu_b"])  # the second too, unless the model's turn was slow
    assert len(model.requests) == 1  # no answer went back: it stopped there


def test_a_read_kept_before_a_restart_is_in_the_transcript_even_when_its_event_was_not_written(received, settings):
    """A read's result is kept with its audit record, its event written after: a read whose event failed (the
    database away for a moment) while the turn's other read went on was kept, and on the resume skipped, so the
    transcript (and the evidence an approval request cites) never showed it."""
    from django.db import OperationalError, connection

    from investigations.runs import agent
    from tests.investigations.hostile_model import HostileModel

    failed = []

    def database_away_at_the_first_result_event(execute, sql, params, many, context):
        first_result = "INSERT INTO investigations_event" in sql.replace('"', "") and "tool_result" in (params or ())
        if first_result and not failed:
            failed.append(sql)
            raise OperationalError("the database went away")
        return execute(sql, params, many, context)

    reads = [("toolu_host", "get_host", {"host": "WS-FIN-07"}), ("toolu_user", "get_user", {"username": "j.doe"})]
    with HostileModel([tool_turn(*reads)]) as model:
        settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = "hostile-test-key", model.url
        _, investigation = received("LAB-SIEM-1001")
        with connection.execute_wrapper(database_away_at_the_first_result_event), pytest.raises(OperationalError):
            agent.run(investigation.pk, retry_database_errors=True)  # as its task with tries left: handed back
        assert failed and Investigation.objects.get(pk=investigation.pk).status == "queued"
        agent.run(investigation.pk)  # the resume
    investigation.refresh_from_db()
    assert investigation.status == "completed"
    shown = investigation.events.filter(kind="tool_result").values_list("data__tool_use_id", flat=True)
    assert sorted(shown) == ["toolu_host", "toolu_user"]
    assert calls_of(investigation).filter(actor="agent", tool__in=["get_host", "get_user"]).count() == 2  # none again


def test_a_turn_of_reads_past_the_tool_call_budget_makes_only_those_within_it(hostile):
    set_budgets(tool_calls=2)
    model, investigation = hostile(
        tool_turn(*[(f"toolu_{n}", "get_host", {"host": "WS-FIN-07"}) for n in range(3)]),
    )
    assert (investigation.status, investigation.verdict) == ("completed", "inconclusive")
    assert investigation.end_reason == "The tool-call budget (2 calls) is exhausted."
    assert sorted(calls_of(investigation).values_list("tool_use_id", flat=True)) == ["toolu_0", "toolu_1"]
    assert investigation.tool_calls_used == 2
    assert len(model.requests) == 1  # no answer went back: it stopped there


def test_the_reads_of_a_turn_are_made_while_its_write_waits_for_an_analyst(hostile):
    isolate = ("toolu_isolate", "isolate_host", {"host": "WS-FIN-07", "reason": "Confirmed payload."})
    _, investigation = hostile(tool_turn(isolate, ("toolu_host", "get_host", {"host": "WS-FIN-07"})))
    assert investigation.status == "waiting"
    assert investigation.action_requests.get().tool_use_id == "toolu_isolate"
    assert list(investigation.tool_results) == ["toolu_host"]  # the read's result, kept for the resume
    assert calls_of(investigation).filter(actor="agent", tool="get_host").count() == 1
