"""What replicas share through Redis, on a real redis-server: the rate limit and live event notices.

Two limiters or two buses on one server stand for two replicas. Redis going down must never stop the bot.
"""

from __future__ import annotations

import asyncio
import logging

from bot.redis_backplane import RedisEventBus, RedisRateLimiter


def test_a_client_over_the_limit_on_one_replica_is_limited_on_the_other(redis_server):
    one, two = RedisRateLimiter(redis_server.url, 6), RedisRateLimiter(redis_server.url, 6)
    allowed = [(one if i % 2 else two).allow("203.0.113.7") for i in range(6)]
    assert allowed == [True] * 6
    assert not one.allow("203.0.113.7") and not two.allow("203.0.113.7")
    assert one.allow("198.51.100.1")  # another client has its own count


def test_the_rate_limit_fails_open_when_redis_is_down(redis_server, caplog):
    limiter = RedisRateLimiter(redis_server.url, 1)
    assert limiter.allow("c") and not limiter.allow("c")
    redis_server.stop()
    with caplog.at_level(logging.WARNING):
        assert all(limiter.allow("c") for _ in range(5))
    assert sum("Redis unavailable (rate limit" in r.message for r in caplog.records) == 1  # once, not once a request


async def _notified(waiter: RedisEventBus, sender: RedisEventBus, channel: str) -> bool:
    task = asyncio.create_task(waiter.wait(channel, 3.0))
    await asyncio.sleep(0.2)
    sender.notify(channel)
    return await task


def test_a_notice_on_one_replica_wakes_a_stream_on_the_other(redis_server):
    one, two = RedisEventBus(redis_server.url), RedisEventBus(redis_server.url)
    try:
        assert asyncio.run(_notified(two, one, "session-1"))
        assert asyncio.run(_notified(one, one, "session-2"))  # and its own streams, through the same channel
    finally:
        one.close()
        two.close()


def test_with_redis_down_a_notice_still_wakes_the_local_streams(redis_server):
    bus = RedisEventBus(redis_server.url)
    try:
        redis_server.stop()
        assert asyncio.run(_notified(bus, bus, "session-1"))
    finally:
        bus.close()


def test_two_servers_on_one_redis_share_the_rest_rate_limit(settings, redis_server):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from bot.api import create_app
    from csbot.wiring import open_assistant

    shared = replace(settings, rate_limit=6, redis_url=redis_server.url)
    one, two = (TestClient(create_app(open_assistant(shared))) for _ in range(2))
    codes = [(one if i % 2 else two).get("/api/v1/health").status_code for i in range(6)]
    assert codes == [200] * 6
    assert one.get("/api/v1/health").status_code == 429 and two.get("/api/v1/health").status_code == 429
    redis_server.stop()
    assert one.get("/api/v1/health").status_code == 200  # Redis down: the limit fails open, the bot keeps serving
