"""The offline model: a deterministic stand-in for Claude behind the real Messages API.

With no API key (the embedded default, the tests) Gatehouse still talks to "Claude" through the
official anthropic SDK. The SDK's HTTP layer is an httpx2.MockTransport whose handler answers
POST /v1/messages as the real API does: request errors as 400 JSON, answers streamed as
server-sent events (or as one JSON message when not streaming). The SDK's own request building
and stream parsing therefore run unchanged (docs/architecture.md, "The flow").

What it says comes from a SOC triage playbook (Playbook) that reads everything from the request:
the alert in the first user message, the tools offered and the tool results so far. It keeps no
state between requests, so a suspended investigation resumes exactly where it stopped, except its
prompt cache (prompt_cache.py): that honours `cache_control` as the API documents and changes only
the usage it reports (input, cache creation, cache read and output tokens), never what it answers. It knows
the lab only through the conversation, and it treats the alert and every tool result as data:
nothing in them is ever followed as an instruction.

    model = OfflineModel()
    client = model.client()                      # an anthropic.Anthropic
    with client.messages.stream(...) as stream:  # the agent loop, unchanged
        ...
    model.requests[-1]                           # the request body it received

Its final turn ends with a verdict block:

    <verdict>{"verdict": "malicious|benign|inconclusive", "summary": "...", "evidence": [...]}</verdict>

where each evidence string starts with the tool_use id it rests on ("toolu_...: what it showed"),
or with "alert" for what only the alert itself says.
"""

from investigations.runs.offline_model.messages_api import (
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    OFFLINE_API_KEY,
    OFFLINE_BASE_URL,
    OFFLINE_MODEL_ID,
    InvalidRequest,
    OfflineModel,
    offline_client,
    sse,
    validate_request,
)
from investigations.runs.offline_model.playbook import OFFLINE_MODEL_NAME

__all__ = [
    "COUNT_TOKENS_PATH",
    "MESSAGES_PATH",
    "OFFLINE_API_KEY",
    "OFFLINE_BASE_URL",
    "OFFLINE_MODEL_ID",
    "OFFLINE_MODEL_NAME",
    "InvalidRequest",
    "OfflineModel",
    "offline_client",
    "sse",
    "validate_request",
]
