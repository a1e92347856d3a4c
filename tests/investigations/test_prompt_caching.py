"""Prompt caching: where the agent puts cache breakpoints, how the offline model honours them (as the
Messages API documents), how usage is counted against the budget, priced and shown, and the share of
the demo story's input tokens served from the cache."""

import json
from datetime import timedelta
from types import SimpleNamespace

import anthropic
import pytest
from django.urls import reverse
from django.utils import timezone

from investigations.intake.services import AlertIn, receive_alert
from investigations.models import Budgets, Investigation
from investigations.runs import llm
from investigations.runs.offline_model import OFFLINE_MODEL_ID, OfflineModel, sse
from investigations.runs.offline_model.prompt_cache import LOOKBACK_BLOCKS, MINIMUM_TOKENS
from investigations.runs.prompts import SYSTEM_PROMPT
from investigations.runs.usage import TokenUsage
from tests.investigations.hostile_model import verdict_turn
from tests.investigations.test_agent_loop import run_rejecting
from tests.investigations.test_hostile_model import hostile  # noqa: F401 - the fixture
from tests.investigations.test_offline_model import TOOLS, alert, first_message
from toolserver.envelope import ok
from toolserver.lab.estate import demo_alerts


def breakpoints(body: dict) -> list[str]:
    """Where a request's cache_control markers are: tools.N, system.N, messages.N.M."""
    found = [f"tools.{i}" for i, tool in enumerate(body.get("tools") or []) if "cache_control" in tool]
    system = body.get("system")
    found += [
        f"system.{i}" for i, block in enumerate(system if isinstance(system, list) else []) if "cache_control" in block
    ]
    for i, message in enumerate(body["messages"]):
        content = message["content"] if isinstance(message["content"], list) else []
        found += [f"messages.{i}.{j}" for j, block in enumerate(content) if "cache_control" in block]
    return found


# -- where the agent puts breakpoints ------------------------------------------------------------
def conversation(turns: int) -> list[dict]:
    """The first message, then `turns` tool calls each with its result."""
    messages = [first_message(alert())]
    for n in range(turns):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Checking {n}."},
                    {"type": "tool_use", "id": f"toolu_{n}", "name": "search_logins", "input": {"user": "j.doe"}},
                ],
            }
        )
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": json.dumps(ok([], source="siem"))}
        messages.append({"role": "user", "content": [result]})
    return messages


def test_the_first_turn_caches_the_tools_the_system_prompt_and_the_alert():
    sent = llm.cached_request(system=SYSTEM_PROMPT, tools=TOOLS, messages=conversation(0))
    assert breakpoints(sent) == [f"tools.{len(TOOLS) - 1}", "system.0", "messages.0.0"]
    assert sent["system"][0]["text"] == SYSTEM_PROMPT


def test_later_turns_cache_the_conversation_and_keep_the_last_turns_breakpoint():
    messages = conversation(3)
    saved = json.dumps(messages)
    sent = llm.cached_request(system=SYSTEM_PROMPT, tools=TOOLS, messages=messages)
    # the last message's last block, and the last block of the message the previous request ended on
    assert breakpoints(sent) == [f"tools.{len(TOOLS) - 1}", "system.0", "messages.4.0", "messages.6.0"]
    assert json.dumps(messages) == saved  # the saved conversation is not marked
    assert [m["content"] for m in sent["messages"][:4]] == [m["content"] for m in messages[:4]]


def test_a_string_message_becomes_a_marked_text_block():
    sent = llm.cached_request(system="s", tools=[], messages=[{"role": "user", "content": "hello"}])
    assert sent["tools"] == []
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]


# -- the offline model's cache ------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def model(clock):
    return OfflineModel(clock=clock)


def ask(model: OfflineModel, messages: list[dict], *, stream: bool = True, **request):
    """One turn as the agent sends it; its usage as the SDK hands it back."""
    client = model.client()
    body = llm.cached_request(system=SYSTEM_PROMPT, tools=TOOLS, messages=messages) | request
    if not stream:
        return client.messages.create(model=OFFLINE_MODEL_ID, max_tokens=1024, **body).usage
    with client.messages.stream(model=OFFLINE_MODEL_ID, max_tokens=1024, **body) as answer:
        return answer.get_final_message().usage


def prompt_tokens(model: OfflineModel, messages: list[dict]) -> int:
    body = llm.cached_request(system=SYSTEM_PROMPT, tools=TOOLS, messages=messages)
    return model.client().messages.count_tokens(model=OFFLINE_MODEL_ID, **body).input_tokens


def test_the_first_turn_writes_the_cache_and_later_turns_read_it(model):
    first = ask(model, conversation(0))
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == prompt_tokens(model, conversation(0)) >= MINIMUM_TOKENS
    assert first.input_tokens == 0  # nothing after the last breakpoint

    second = ask(model, conversation(1))
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == prompt_tokens(model, conversation(1)) - prompt_tokens(
        model, conversation(0)
    )
    assert second.cache_read_input_tokens > 5 * second.cache_creation_input_tokens  # mostly reads

    third = ask(model, conversation(2), stream=False)  # the same usage without streaming
    assert third.cache_read_input_tokens == prompt_tokens(model, conversation(1))


def test_another_conversation_reads_the_shared_tools_and_system_prompt(model):
    ask(model, conversation(0))
    other = [first_message(alert(external_id="LAB-SIEM-2002", host="WS-HR-01"))]
    usage = ask(model, other)
    assert usage.cache_read_input_tokens > 0
    assert usage.cache_read_input_tokens + usage.cache_creation_input_tokens == prompt_tokens(model, other)


def test_a_prefix_expires_after_five_minutes_unless_read(model, clock):
    ask(model, conversation(0))
    clock.now += 299
    assert ask(model, conversation(0)).cache_read_input_tokens > 0  # and the read refreshes it
    clock.now += 299
    assert ask(model, conversation(0)).cache_read_input_tokens > 0
    clock.now += 301
    expired = ask(model, conversation(0))
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == prompt_tokens(model, conversation(0))


def test_a_one_hour_breakpoint_outlives_five_minutes(model, clock):
    client = model.client()
    marked = {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    request = {
        "model": OFFLINE_MODEL_ID,
        "max_tokens": 1024,
        "system": [{"type": "text", "text": SYSTEM_PROMPT} | marked],
    }
    tools = [*TOOLS[:-1], TOOLS[-1] | marked]
    first = client.messages.create(**request, tools=tools, messages=conversation(0)).usage
    clock.now += 3599
    later = client.messages.create(**request, tools=tools, messages=conversation(0)).usage
    assert later.cache_read_input_tokens == first.cache_creation_input_tokens > 0
    clock.now += 3601
    assert client.messages.create(**request, tools=tools, messages=conversation(0)).usage.cache_read_input_tokens == 0


def test_without_breakpoints_nothing_is_cached(model):
    client = model.client()
    request = {"model": OFFLINE_MODEL_ID, "max_tokens": 1024, "system": SYSTEM_PROMPT, "tools": TOOLS}
    for _ in range(2):
        usage = client.messages.create(**request, messages=conversation(0)).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens == prompt_tokens(model, conversation(0))


def test_a_prefix_under_the_minimum_length_is_not_cached(model):
    client = model.client()
    short = [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]
    for _ in range(2):
        usage = client.messages.create(model=OFFLINE_MODEL_ID, max_tokens=100, messages=short).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens > 0


def marked_last(model: OfflineModel, messages: list[dict]):
    """A request with one breakpoint, on the last block: the API's lookback alone finds earlier prefixes."""
    messages = [dict(message) for message in messages]
    *rest, last = messages[-1]["content"]
    messages[-1]["content"] = [*rest, last | {"cache_control": {"type": "ephemeral"}}]
    return (
        model.client()
        .messages.create(model=OFFLINE_MODEL_ID, max_tokens=1024, system=SYSTEM_PROMPT, tools=TOOLS, messages=messages)
        .usage
    )


def test_a_cached_prefix_is_found_within_twenty_blocks_before_a_breakpoint(model):
    marked_last(model, conversation(0))
    far = conversation(LOOKBACK_BLOCKS // 3 + 1)  # three blocks a turn: 21 blocks on
    assert marked_last(model, far).cache_read_input_tokens == 0
    near = conversation(LOOKBACK_BLOCKS // 3)  # 18 blocks on
    assert marked_last(model, near).cache_read_input_tokens == prompt_tokens(model, conversation(0))


def wide_turn(messages: list[dict], calls: int) -> list[dict]:
    """`messages` and one more turn of `calls` parallel tool calls with their results."""
    ids = [f"toolu_wide_{n}" for n in range(calls)]
    uses = [{"type": "tool_use", "id": i, "name": "search_logins", "input": {"user": "j.doe"}} for i in ids]
    results = [{"type": "tool_result", "tool_use_id": i, "content": json.dumps(ok([], source="siem"))} for i in ids]
    return [*messages, {"role": "assistant", "content": uses}, {"role": "user", "content": results}]


def test_the_previous_turns_breakpoint_reads_it_after_a_turn_longer_than_the_lookback(model):
    ask(model, conversation(1))
    wide = wide_turn(conversation(1), calls=LOOKBACK_BLOCKS // 2 + 1)  # 22 blocks in one turn
    assert ask(model, wide).cache_read_input_tokens == prompt_tokens(model, conversation(1))

    alone = OfflineModel()  # with only the moving breakpoint, the same turn misses the cache
    marked_last(alone, conversation(1))
    assert marked_last(alone, wide).cache_read_input_tokens == 0


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({"type": "persistent"}, "type: Input should be 'ephemeral'"),
        ({"type": "ephemeral", "ttl": "10m"}, "ttl: Input should be '5m' or '1h'"),
    ],
)
def test_a_malformed_breakpoint_gets_a_400(model, control, message):
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": control}]}]
    with pytest.raises(anthropic.BadRequestError, match=message):
        model.client().messages.create(model=OFFLINE_MODEL_ID, max_tokens=100, messages=messages)


def test_more_than_four_breakpoints_get_a_400_as_from_the_api(model):
    marked = {"cache_control": {"type": "ephemeral"}}
    tools = [tool | marked for tool in TOOLS[:3]]
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"} | marked]}]
    with pytest.raises(
        anthropic.BadRequestError, match=r"A maximum of 4 blocks with cache_control may be provided\. Found 5\."
    ):
        model.client().messages.create(
            model=OFFLINE_MODEL_ID,
            max_tokens=100,
            system=[{"type": "text", "text": "s"} | marked],
            tools=tools,
            messages=messages,
        )


# -- usage, budget and cost ---------------------------------------------------------------------
def test_usage_adds_up_by_kind_and_its_total_counts_every_kind():
    def message(input_tokens, cache_creation, cache_read, output_tokens):
        usage = SimpleNamespace(
            input_tokens=input_tokens,
            cache_creation_input_tokens=cache_creation,
            cache_read_input_tokens=cache_read,
            output_tokens=output_tokens,
        )
        return SimpleNamespace(usage=usage)

    usage = TokenUsage.of(message(10, 200, 3000, 40)) + TokenUsage.of(message(5, None, None, 1))  # null: 0
    assert usage == TokenUsage(input=15, cache_creation=200, cache_read=3000, output=41)
    assert usage.total == 15 + 200 + 3000 + 41
    assert usage.cache_read_share == 3000 / 3215
    assert TokenUsage().cache_read_share is None


@pytest.fixture
def fresh_offline_model(monkeypatch):
    """A cold prompt cache: what one investigation's own turns read, nothing left by an earlier test."""
    monkeypatch.setattr(llm, "_offline", OfflineModel())
    return llm._offline


transactional = pytest.mark.django_db(transaction=True)


@transactional
def test_the_demo_story_reads_most_of_its_input_from_the_cache_and_the_next_reads_more(
    received, analyst, client, fresh_offline_model
):
    _, investigation = received(demo_alerts()[0]["external_id"])  # the phishing story seed_demo queues
    investigation = run_rejecting(investigation, analyst)
    assert investigation.verdict == "malicious"

    requests = [body for body in fresh_offline_model.requests if isinstance(body, dict)]
    turns = sum(message["role"] == "assistant" for message in investigation.messages)
    assert len(requests) == turns >= 6  # one request a turn: the reads, the lookups, three writes, the verdict
    for body in requests:
        marks = breakpoints(body)
        last = len(body["messages"]) - 1
        assert len(marks) <= 4
        assert marks[:2] == [f"tools.{len(body['tools']) - 1}", "system.0"]
        assert marks[-1] == f"messages.{last}.{len(body['messages'][last]['content']) - 1}"

    usage = investigation.usage
    # Six turns, each writing a batch of results to the cache: 0.795 read from it on a cold cache (0.90 when the
    # story took 14 turns of one call each, reading the same prefix more often: 88k tokens in all then, 43k now).
    assert usage.cache_read_share >= 0.75, usage
    assert investigation.tokens_used == usage.total
    # The next investigation reads the tools and the system prompt the first wrote (shared, within the cache's
    # 5 minutes): what each pays in a deployment that investigates more than one alert in five minutes.
    Investigation.objects.update(created_at=timezone.now() - timedelta(hours=1))  # past grouping: its own
    again = receive_alert(AlertIn(**(demo_alerts()[0] | {"external_id": "LAB-SIEM-1001-again"}))).investigation
    again = run_rejecting(again, analyst)
    assert again.verdict == "malicious" and again.usage.cache_read_share >= 0.8, again.usage
    print(
        f"\ndemo story: cold {usage} ({usage.cache_read_share:.3f}), next {again.usage} ({again.usage.cache_read_share:.3f})"
    )

    client.force_login(analyst)
    page = client.get(reverse("investigations:detail", args=[investigation.pk])).content.decode()
    assert f"{usage.cache_read_share:.0%} of input tokens read from the cache" in page


@transactional
def test_the_token_budget_counts_cache_reads_and_writes(received, analyst, fresh_offline_model):
    """The demo story's input and output alone stay far under 20,000 tokens; with what it read and
    wrote to the cache it goes over, and the run stops on the token budget."""
    Budgets.current()
    Budgets.objects.filter(pk=1).update(tokens=20_000)
    _, investigation = received("LAB-SIEM-1001")
    investigation = run_rejecting(investigation, analyst)
    usage = investigation.usage
    assert (investigation.verdict, investigation.end_reason) == (
        "inconclusive",
        "The token budget (20000 tokens) is exhausted.",
    )
    assert usage.input + usage.output < 20_000 <= investigation.tokens_used == usage.total


@pytest.mark.django_db
def test_the_investigation_page_shows_tokens_by_kind_and_the_estimated_cost(client, analyst, settings):
    from tests.investigations.test_pages import raise_alert

    settings.ANTHROPIC_API_KEY = ""
    investigation = raise_alert("A-1")
    Investigation.objects.filter(pk=investigation.pk).update(
        model="claude-opus-5-5",
        input_tokens=1000,
        cache_creation_tokens=2000,
        cache_read_tokens=100_000,
        output_tokens=500,
    )
    client.force_login(analyst)
    url = reverse("investigations:detail", args=[investigation.pk])
    page = client.get(url).content.decode()
    for kind, figure in (("input", 1000), ("cache-creation", 2000), ("cache-read", 100000), ("output", 500)):
        assert f'<dd class="tokens-{kind}">{figure}</dd>' in page
    assert "97% of input tokens read from the cache" in page  # 100,000 of 103,000
    # 1000 x $4 + 2000 x $5 + 100,000 x $0.20 + 500 x $20, per million
    assert '<dd class="estimated-cost">$0.0440 <small class="muted">at claude-opus-5-5 prices</small>' in page

    settings.MODEL_PRICES = {}
    assert "no price configured for claude-opus-5-5" in client.get(url).content.decode()


@pytest.mark.django_db
def test_the_api_gives_tokens_by_kind_and_the_estimated_cost(analyst, settings):
    from django.test import Client

    from investigations.tokens import create_api_token
    from tests.investigations.test_pages import raise_alert

    settings.ANTHROPIC_API_KEY = ""
    investigation = raise_alert("A-1")
    Investigation.objects.filter(pk=investigation.pk).update(
        model="claude-opus-5-5",
        tokens_used=103_500,
        input_tokens=1000,
        cache_creation_tokens=2000,
        cache_read_tokens=100_000,
        output_tokens=500,
    )
    token = create_api_token(analyst, "automation")[1]
    body = Client().get(f"/api/investigations/{investigation.pk}", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["tokens_used"] == 103_500
    assert body["tokens"] == {
        "input": 1000,
        "cache_creation": 2000,
        "cache_read": 100_000,
        "output": 500,
        "cache_read_share": 100_000 / 103_000,
        "estimated_cost_usd": "0.044000",
    }


# -- the real-API path, against the API's documented usage ---------------------------------------
@transactional
def test_contract_the_api_path_sends_breakpoints_and_records_usage_by_kind(hostile):
    """Claude through the SDK and HTTP (a stand-in on 127.0.0.1): the request carries the breakpoints,
    and the usage the prompt-caching guide shows for a cache write is saved by kind, all counted."""
    documented = {"cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "input_tokens": 21}
    turn = verdict_turn()
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_cache",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-5-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": documented | {"output_tokens": 1},
        },
    }
    turn.frames[0] = sse("message_start", start)
    model, investigation = hostile(turn)

    (body,) = model.requests
    assert breakpoints(body) == [f"tools.{len(body['tools']) - 1}", "system.0", "messages.0.0"]
    usage = investigation.usage
    assert (usage.input, usage.cache_creation, usage.cache_read) == (21, 188086, 0)
    assert usage.output == 5  # the message_delta's count, as the SDK keeps it
    assert investigation.tokens_used == 21 + 188086 + 5
