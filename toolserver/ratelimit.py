"""Per-server rate limits shared by every worker (architecture rule 7).

Production: a fixed window counter in Redis, so every worker process draws on one budget.
Embedded default: the same window in process memory (there is only one worker process).
"""

import threading
import time
from dataclasses import dataclass

from django.conf import settings

# INCR the window's counter; the first call of a window starts its expiry. Over the limit,
# answer the milliseconds until the window ends.
_ACQUIRE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if count > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return -1
"""


@dataclass(frozen=True)
class Limit:
    calls: int
    per_seconds: int


def limit_of(server) -> Limit:
    """A ToolServer's limit, as an admin set it (its first value: settings.TOOLSERVER_RATE_LIMITS)."""
    return Limit(server.rate_limit_calls, server.rate_limit_window_s)


class RedisRateLimiter:
    def __init__(self, url: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._acquire = self._redis.register_script(_ACQUIRE)

    def acquire(self, bucket: str, limit: Limit) -> float | None:
        """None when the call may go ahead; otherwise the seconds to wait."""
        wait_ms = self._acquire(keys=[f"gatehouse:ratelimit:{bucket}"], args=[limit.per_seconds * 1000, limit.calls])
        return None if wait_ms < 0 else max(wait_ms, 1) / 1000

    def reset(self, bucket: str) -> None:
        self._redis.delete(f"gatehouse:ratelimit:{bucket}")


class LocalRateLimiter:
    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # bucket -> (window end, count)

    def acquire(self, bucket: str, limit: Limit) -> float | None:
        now = time.monotonic()
        with self._lock:
            ends_at, count = self._windows.get(bucket, (0.0, 0))
            if now >= ends_at:
                ends_at, count = now + limit.per_seconds, 0
            count += 1
            self._windows[bucket] = (ends_at, count)
            return None if count <= limit.calls else ends_at - now

    def reset(self, bucket: str) -> None:
        with self._lock:
            self._windows.pop(bucket, None)


_limiter = None
_limiter_lock = threading.Lock()


def get_rate_limiter():
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = RedisRateLimiter(settings.REDIS_URL) if settings.REDIS_URL else LocalRateLimiter()
        return _limiter
