"""Rule 7: a rate limit per server, shared by every worker."""

import multiprocessing
import uuid

import pytest
from django.conf import settings

from toolserver.ratelimit import Limit, LocalRateLimiter, RedisRateLimiter


def exhaust(limiter, bucket, limit, calls):
    return [limiter.acquire(bucket, limit) for _ in range(calls)]


def test_local_limiter_allows_the_limit_then_says_how_long_to_wait():
    results = exhaust(LocalRateLimiter(), "siem", Limit(3, 60), 5)
    assert results[:3] == [None, None, None]
    assert all(0 < wait <= 60 for wait in results[3:])


def test_buckets_are_independent():
    limiter = LocalRateLimiter()
    exhaust(limiter, "siem", Limit(1, 60), 1)
    assert limiter.acquire("siem", Limit(1, 60)) is not None
    assert limiter.acquire("edr", Limit(1, 60)) is None


def _acquire_in_another_process(url, bucket, queue):
    limiter = RedisRateLimiter(url)
    queue.put([limiter.acquire(bucket, Limit(5, 60)) for _ in range(4)])


@pytest.mark.production
def test_redis_limiter_is_shared_across_processes():
    bucket = f"test-{uuid.uuid4().hex}"
    queue = multiprocessing.get_context("spawn").Queue()
    processes = [
        multiprocessing.get_context("spawn").Process(
            target=_acquire_in_another_process, args=(settings.REDIS_URL, bucket, queue)
        )
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    results = [wait for _ in processes for wait in queue.get(timeout=30)]
    for process in processes:
        process.join(timeout=30)
    assert results.count(None) == 5  # 12 attempts against one budget of 5
    assert all(0 < wait <= 60 for wait in results if wait is not None)
    RedisRateLimiter(settings.REDIS_URL).reset(bucket)
