"""Which model investigations talk to, and the anthropic client that reaches it.

With ANTHROPIC_API_KEY set, Claude through the official SDK. Without it, the offline model
answers the same Messages API inside the SDK's HTTP layer (one per worker process, so its
captured requests can be inspected), and it is named "offline model" wherever it shows.
"""

from __future__ import annotations

import functools
import ssl
import threading
from typing import TYPE_CHECKING

from django.conf import settings

from investigations.runs.offline_model import (
    OFFLINE_MODEL_ID,
    OFFLINE_MODEL_NAME,
    OfflineModel,
)

if TYPE_CHECKING:
    import anthropic

_offline: OfflineModel | None = None
_lock = threading.Lock()


def is_offline() -> bool:
    return not settings.ANTHROPIC_API_KEY


def model_id() -> str:
    """The model an investigation started now runs on."""
    return OFFLINE_MODEL_ID if is_offline() else settings.MODEL


def display_name(model: str) -> str:
    return OFFLINE_MODEL_NAME if model == OFFLINE_MODEL_ID else model


def offline_model() -> OfflineModel:
    global _offline
    with _lock:
        if _offline is None:
            _offline = OfflineModel(
                delay_s=settings.OFFLINE_MODEL_DELAY_MS / 1000, turn_delay_s=settings.OFFLINE_TURN_DELAY_MS / 1000
            )
        return _offline


MAX_RETRIES = 2


def load_sdk() -> None:
    """Import the SDK now: a worker does it as it starts, beside its work, so its first investigation
    does not wait for it (a second or more). Nothing else imports it before a model is asked."""
    import anthropic  # noqa: F401


def client(*, time_left_s: float | None = None) -> anthropic.Anthropic:
    """A client whose requests, retries included, end within `time_left_s` when it is given."""
    if is_offline():
        return offline_model().client()
    timeout, retries = settings.MODEL_TIMEOUT_S, MAX_RETRIES
    if time_left_s is not None:
        timeout = max(0.1, min(timeout, time_left_s))
        retries = max(0, min(retries, int(time_left_s // timeout) - 1))  # only attempts that fit in the time left
    return _api_client().with_options(timeout=timeout, max_retries=retries)


_api = threading.local()


def _api_client() -> anthropic.Anthropic:
    """This thread's client of the API, kept: its connection is reused by the thread's next turns (a new
    client a turn would open a new TLS connection a turn). One a thread, not one a process: a pool shared
    by hundreds of turns in flight looks through all its connections for every request. Made again when
    the key or the address changes."""
    import anthropic

    config = (settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    if getattr(_api, "config", None) != config:
        http = anthropic.DefaultHttpxClient(verify=_tls_context())
        _api.client = anthropic.Anthropic(api_key=config[0], base_url=config[1] or None, http_client=http)
        _api.config = config
    return _api.client


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One for the process's clients: each would load the CA bundle (18 ms and 880 KiB apiece)."""
    import httpx2

    return httpx2.create_ssl_context()


# -- prompt caching -------------------------------------------------------------------------------
CACHE = {"type": "ephemeral"}  # the default 5-minute TTL: a turn follows the last within seconds


def cached_request(*, system: str, tools: list[dict], messages: list[dict]) -> dict:
    """The request's system, tools and messages with prompt-cache breakpoints (at most 4, the API's
    limit), each caching the prompt up to it in the order tools, system, messages:
    - the last tool: the tool list, shared by every investigation offered the same tools;
    - the system prompt: tools and system, shared too;
    - the last block of the last message: this request's whole conversation, which the next turn reads;
    - the last block of the previous request's last message (two messages back): what this request
      reads, even when the turn since added more blocks than the API looks back over (20).
    The blocks are copied: the saved conversation stays as the model sent it."""
    tools = [*tools[:-1], {**tools[-1], "cache_control": CACHE}] if tools else []
    messages = [dict(message) for message in messages]
    for position in (p for p in (len(messages) - 3, len(messages) - 1) if p >= 0):
        content = messages[position]["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if content:
            messages[position]["content"] = [*content[:-1], {**content[-1], "cache_control": CACHE}]
    return {
        "system": [{"type": "text", "text": system, "cache_control": CACHE}],
        "tools": tools,
        "messages": messages,
    }
