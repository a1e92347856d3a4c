"""The Messages API, answered inside the SDK's HTTP layer: request checks, the answer as JSON or
server-sent events. What the answer says comes from the playbook."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from investigations.runs.offline_model.playbook import (
    Conversation,
    Playbook,
    Turn,
    clip,
    content_blocks,
    digest,
)
from investigations.runs.offline_model.prompt_cache import InvalidCacheControl, PromptCache, Usage, estimate_tokens

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)


OFFLINE_MODEL_ID = "gatehouse-offline-1"  # the model id its messages report
OFFLINE_API_KEY = "offline"
OFFLINE_BASE_URL = "http://offline-model.invalid"  # .invalid never resolves (RFC 2606)


MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


# ======================================================================================
# The Messages API
# ======================================================================================
class OfflineModel:
    """The offline Messages API: a handler for httpx2.MockTransport, and clients that use it.

    `requests` keeps the last `max_requests` request bodies as received (never the headers,
    so never the Authorization header). `delay_s` paces the streamed chunks so a browser shows
    text arriving; tests leave it at 0. `turn_delay_s` is a pause before a streamed answer's first
    event, as a real model thinks before it streams (benches and tests of many investigations in
    flight). `cache` is its prompt cache (prompt_cache.py), on `clock`.
    """

    def __init__(
        self,
        *,
        max_requests: int = 100,
        delay_s: float = 0.0,
        turn_delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.requests: deque[Any] = deque(maxlen=max_requests)
        self.delay_s = delay_s
        self.turn_delay_s = turn_delay_s
        self.cache = PromptCache(clock=clock)

    def client(self, *, async_client: bool = False) -> anthropic.Anthropic | anthropic.AsyncAnthropic:
        import anthropic  # here: a process that never runs a model (the console's web side) never imports the SDK

        if async_client:
            http = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle_async))
            return anthropic.AsyncAnthropic(
                api_key=OFFLINE_API_KEY, base_url=OFFLINE_BASE_URL, max_retries=0, http_client=http
            )
        http = httpx2.Client(transport=httpx2.MockTransport(self.handle))
        return anthropic.Anthropic(api_key=OFFLINE_API_KEY, base_url=OFFLINE_BASE_URL, max_retries=0, http_client=http)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        """The sync transport's handler: a streamed body must be a sync iterator."""
        reply = self.reply(request)
        if reply.events is None:
            return reply.response()

        def paced() -> Iterator[bytes]:
            if self.turn_delay_s:
                time.sleep(self.turn_delay_s)
            for chunk in reply.events:
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield chunk

        return reply.response(paced())

    async def handle_async(self, request: httpx2.Request) -> httpx2.Response:
        """The async transport's handler: a streamed body must be an async iterator."""
        reply = self.reply(request)
        if reply.events is None:
            return reply.response()

        async def paced() -> AsyncIterator[bytes]:
            if self.turn_delay_s:
                await asyncio.sleep(self.turn_delay_s)
            for chunk in reply.events:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield chunk

        return reply.response(paced())

    def reply(self, request: httpx2.Request) -> Reply:
        """What the API answers to one HTTP request (MockTransport has read the body already)."""
        path = request.url.path
        if path not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            return Reply.error(404, "not_found_error", f"Not found: {path}")
        if request.method != "POST":
            return Reply.error(405, "invalid_request_error", f"Method not allowed: {request.method}")
        try:
            body = json.loads(request.content)
        except ValueError:
            self.requests.append(request.content.decode("utf-8", "replace"))
            return Reply.error(400, "invalid_request_error", "The request body is not valid JSON.")
        self.requests.append(body)
        try:
            validate_request(body, count_only=path == COUNT_TOKENS_PATH)
            blocks = self.cache.check(body)
        except (InvalidRequest, InvalidCacheControl) as exc:
            return Reply.error(400, "invalid_request_error", str(exc))
        if path == COUNT_TOKENS_PATH:
            return Reply(200, body={"input_tokens": blocks[-1].tokens})
        try:
            turn = Playbook(Conversation.from_request(body)).next_turn()
        except Exception:  # a bug here must look like an API failure, not a dropped connection
            log.exception("the offline model failed to answer")
            return Reply.error(500, "api_error", "Internal server error")
        message = build_message(turn, body, self.cache.use(blocks))
        if body.get("stream"):
            return Reply(200, events=list(stream_events(message)))
        return Reply(200, body=message)


def offline_client(
    *, async_client: bool = False, model: OfflineModel | None = None
) -> anthropic.Anthropic | anthropic.AsyncAnthropic:
    """An Anthropic client answered by the offline model (a fresh one unless `model` is given)."""
    return (model or OfflineModel()).client(async_client=async_client)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | None = None  # a JSON answer
    events: list[bytes] | None = None  # an SSE answer
    request_id: str = "req_offline"

    @classmethod
    def error(cls, status: int, kind: str, message: str) -> Reply:
        # The shape the real API uses; the SDK maps 400 to BadRequestError and so on.
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": cls.request_id}
        return cls(status, body=body)

    def response(self, stream=None) -> httpx2.Response:
        headers = {"request-id": self.request_id}
        if stream is not None:
            return httpx2.Response(
                self.status, headers=headers | {"content-type": "text/event-stream; charset=utf-8"}, content=stream
            )
        return httpx2.Response(self.status, headers=headers, json=self.body)


# ======================================================================================
# Request validation: the mistakes the real API refuses, so the agent loop meets them here
# ======================================================================================
class InvalidRequest(ValueError):
    """Its message becomes the 400's error.message. It names fields, never header values."""


def validate_request(body: Any, *, count_only: bool = False) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    required = ("model", "messages") if count_only else ("model", "max_tokens", "messages")
    for name in required:
        if name not in body:
            raise InvalidRequest(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise InvalidRequest("model: Input should be a non-empty string")
    if not count_only:
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InvalidRequest("max_tokens: Input should be an integer greater than or equal to 1")
    _validate_tools(body.get("tools"))
    _validate_messages(body["messages"])


def _validate_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    names = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools.{i}.name: Field required")
        if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
            raise InvalidRequest(f"tools.{i}.input_schema: Field required")
        names.append(tool["name"])
    if len(names) != len(set(names)):
        raise InvalidRequest("tools: Tool names must be unique.")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    pending: set[str] = set()  # tool_use ids the next message must answer
    used: set[str] = set()  # every tool_use id so far
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages.{i}.content: Field required")
        blocks = content_blocks(content)
        if any(not isinstance(block, dict) or "type" not in block for block in blocks):
            raise InvalidRequest(f"messages.{i}.content: every content block needs a type")
        answered = {block.get("tool_use_id") for block in blocks if block["type"] == "tool_result"}
        for j, block in enumerate(blocks):
            if block["type"] == "tool_result" and block.get("tool_use_id") not in pending:
                raise InvalidRequest(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{clip(str(block.get('tool_use_id')), 80)}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
        if pending - answered:
            raise InvalidRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(pending - answered))}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        pending = set()
        if message["role"] == "assistant":
            for j, block in enumerate(blocks):
                if block["type"] != "tool_use":
                    continue
                if not isinstance(block.get("input"), dict):
                    raise InvalidRequest(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary")
                if block.get("id") in used or block.get("id") in pending:
                    raise InvalidRequest(f"messages.{i}.content.{j}: `tool_use` ids must be unique")
                pending.add(block.get("id"))
            used |= pending
    if messages[-1]["role"] != "user":
        raise InvalidRequest("messages: the final message must have role `user`")


# ======================================================================================
# The answer: one assistant message, as JSON or as server-sent events
# ======================================================================================


def build_message(turn: Turn, body: dict, usage: Usage) -> dict:
    """The Message the API returns. Ids derive from the conversation: the same request, the same answer."""
    conversation = json.dumps(body["messages"], sort_keys=True, default=str)
    content: list[dict] = [{"type": "text", "text": turn.text}]
    for position, (tool, tool_input) in enumerate(turn.calls):
        tool_use_id = "toolu_" + digest(conversation, tool, str(position))
        content.append({"type": "tool_use", "id": tool_use_id, "name": tool, "input": tool_input})
    return {
        "id": "msg_" + digest(conversation, "message"),
        "type": "message",
        "role": "assistant",
        "model": OFFLINE_MODEL_ID,
        "content": content,
        "stop_reason": turn.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": estimate_tokens(json.dumps(content)),
        },
    }


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(message: dict) -> Iterator[bytes]:
    """The message as the streaming API sends it: text in few-word deltas, tool input as JSON fragments."""
    start = dict(message, content=[], stop_reason=None, usage=dict(message["usage"], output_tokens=1))
    yield sse("message_start", {"type": "message_start", "message": start})
    yield sse("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            deltas = ({"type": "text_delta", "text": piece} for piece in _text_pieces(block["text"]))
        else:
            opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = ({"type": "input_json_delta", "partial_json": piece} for piece in _json_pieces(block["input"]))
        yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})
        for delta in deltas:
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": message["usage"],  # cumulative, as the API sends it
        },
    )
    yield sse("message_stop", {"type": "message_stop"})


def _text_pieces(text: str, words: int = 3) -> Iterator[str]:
    """A few words at a time, whitespace kept, so the pieces join back to the exact text."""
    tokens = re.findall(r"\s*\S+\s*", text) or [text]
    for i in range(0, len(tokens), words):
        yield "".join(tokens[i : i + words])


def _json_pieces(value: dict, size: int = 24) -> Iterator[str]:
    text = json.dumps(value)
    for i in range(0, len(text), size):
        yield text[i : i + size]
