"""Which model investigations talk to, and the anthropic client that reaches it.

With ANTHROPIC_API_KEY set, Claude through the official SDK. Without it, the offline model
answers the same Messages API inside the SDK's HTTP layer (one per worker process, so its
captured requests can be inspected), and it is named "offline model" wherever it shows.
"""

import threading

import anthropic
from django.conf import settings

from investigations.offline_model import OFFLINE_MODEL_ID, OFFLINE_MODEL_NAME, OfflineModel

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
            _offline = OfflineModel(delay_s=settings.OFFLINE_MODEL_DELAY_MS / 1000)
        return _offline


def client() -> anthropic.Anthropic:
    if is_offline():
        return offline_model().client()
    return anthropic.Anthropic(api_key=settings.ANTHROPIC_API_KEY, timeout=settings.MODEL_TIMEOUT_S, max_retries=2)
