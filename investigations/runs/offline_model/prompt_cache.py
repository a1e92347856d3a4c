"""Prompt caching as the Messages API documents it, so the offline model reports usage the way Claude does.

The rules followed (platform.claude.com, "Prompt caching"):
- The prompt is read in the order tools, system, messages; a `cache_control` breakpoint marks the prefix
  up to and including its block. At most 4 breakpoints per request (more is a 400).
- A prefix is read from the cache when the same prefix, on the same model, was cached within its TTL
  (`ttl` "5m", the default, or "1h"); a read refreshes its TTL. The API looks for a hit at the breakpoint
  and at the block boundaries up to 20 blocks before it, so a breakpoint that moves on a little each turn
  still reads the last turn's prefix.
- A prefix shorter than the model's minimum cacheable length is never cached (no error: both cache counts
  stay 0). The offline model's minimum is MINIMUM_TOKENS, the Messages API's for most current models.
- Usage: `cache_read_input_tokens` is the longest prefix read; `cache_creation_input_tokens` is what the
  request wrote after it, up to its last breakpoint; `input_tokens` is the rest, after the last breakpoint.
  The three together are the whole prompt.

The cache holds only hashes and expiry times, never the prompt. Which answer the model gives never
depends on it: only the usage it reports.
"""

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
MINIMUM_TOKENS = 1024
TTL_S = {"5m": 300, "1h": 3600}
MAX_ENTRIES = 10_000  # a long-lived process forgets the soonest-expiring first


class InvalidCacheControl(ValueError):
    """A breakpoint the API refuses: its message becomes the 400's."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


def estimate_tokens(text: str | bytes) -> int:
    """About four characters a token: plausible usage figures for budgets and pages."""
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class Block:
    key: str  # the hash of the prompt up to and including this block
    tokens: int  # the prompt's tokens up to and including this block
    ttl: str | None  # its breakpoint's TTL, when it has one


def prompt_blocks(body: dict) -> list[Block]:
    """The request's prompt as the cache sees it: each tool, system block and content block in order."""
    parts: list[tuple[Any, Any]] = [(("tool",), tool) for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    parts += [(("system",), block) for block in (system if isinstance(system, list) else [])]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts += [(("message", message.get("role")), block) for block in content or []]
    blocks, digest, tokens = [], hashlib.sha256(str(body.get("model")).encode()), 0
    for where, part in parts:
        control = part.get("cache_control") if isinstance(part, dict) else None
        if isinstance(part, dict):
            part = {name: value for name, value in part.items() if name != "cache_control"}  # not in the key
        text = json.dumps([where, part], sort_keys=True, default=str)
        digest.update(text.encode())
        tokens += estimate_tokens(text)
        blocks.append(Block(digest.hexdigest(), tokens, _ttl(control, len(blocks))))
    return blocks


def _ttl(control: Any, position: int) -> str | None:
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise InvalidCacheControl(f"cache_control (block {position}): type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in TTL_S:
        raise InvalidCacheControl(f"cache_control (block {position}): ttl: Input should be '5m' or '1h'")
    return ttl


class PromptCache:
    """The prefixes cached so far: key -> (when it expires, its TTL), on `clock` (seconds)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._entries: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def check(self, body: dict) -> list[Block]:
        """The request's blocks, its breakpoints valid (else InvalidCacheControl)."""
        blocks = prompt_blocks(body)
        found = sum(block.ttl is not None for block in blocks)
        if found > MAX_BREAKPOINTS:
            raise InvalidCacheControl(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
            )
        return blocks

    def use(self, blocks: list[Block]) -> Usage:
        """Read the longest cached prefix a breakpoint reaches, write the breakpoints after it: the usage."""
        total = blocks[-1].tokens if blocks else 0
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl is not None]
        if not breakpoints:
            return Usage(input_tokens=total)
        with self._lock:
            now = self.clock()
            reachable = {j for i in breakpoints for j in range(max(0, i - LOOKBACK_BLOCKS + 1), i + 1)}
            hit = max((j for j in reachable if self._entries.get(blocks[j].key, (0.0, 0))[0] > now), default=-1)
            read = blocks[hit].tokens if hit >= 0 else 0
            if hit >= 0:  # a read refreshes the entry
                ttl_s = self._entries[blocks[hit].key][1]
                self._entries[blocks[hit].key] = (now + ttl_s, ttl_s)
            written = [i for i in breakpoints if i > hit and blocks[i].tokens >= MINIMUM_TOKENS]
            for i in written:
                ttl_s = TTL_S[blocks[i].ttl or "5m"]
                self._entries[blocks[i].key] = (now + ttl_s, ttl_s)
            self._forget(now)
        created = blocks[written[-1]].tokens - read if written else 0
        return Usage(
            input_tokens=total - read - created, cache_creation_input_tokens=created, cache_read_input_tokens=read
        )

    def _forget(self, now: float) -> None:
        """Past MAX_ENTRIES, the expired entries go, then the soonest to expire."""
        if len(self._entries) <= MAX_ENTRIES:
            return
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        for key in sorted(self._entries, key=lambda key: self._entries[key][0])[: len(self._entries) - MAX_ENTRIES]:
            del self._entries[key]
