"""What replicas share through Redis (``CSBOT_REDIS_URL``): the rate limit and the "look again now" of live events.

Both are optional accelerators of what the database already guarantees, so Redis being down never stops the
bot: the rate limit fails open (a warning in the log, at most once a minute) and events fall back to the
streams' one-second look at the store. The rate limit is the ``limits`` library's sliding window on Redis;
events are Redis pub/sub on one channel.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from bot.events import EventBus

log = logging.getLogger(__name__)
CHANNEL = "csbot:events"
WARN_EVERY_S = 60.0


class _Warner:
    """Log a Redis failure once a minute, not once a request."""

    def __init__(self, what: str) -> None:
        self.what, self._last = what, -WARN_EVERY_S

    def __call__(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last >= WARN_EVERY_S:
            self._last = now
            log.warning("Redis unavailable (%s): %s", self.what, err)


class RedisRateLimiter:
    """``per_minute`` REST requests per client per minute, counted in Redis: every replica sees the same count."""

    def __init__(self, url: str, per_minute: int) -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import storage_from_string
        from limits.strategies import SlidingWindowCounterRateLimiter

        self.item = RateLimitItemPerMinute(per_minute)
        self.storage = storage_from_string(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._warn = _Warner("rate limit: failing open")

    def allow(self, client: str) -> bool:
        try:
            return self.limiter.hit(self.item, "csbot", client)
        except Exception as err:  # noqa: BLE001 - any Redis failure: serve rather than refuse everyone
            self._warn(err)
            return True


class RedisEventBus(EventBus):
    """``notify`` publishes to Redis; a listener thread wakes this process's waiters for every replica's notices.

    When Redis is down, a notice still wakes the waiters of this process; other replicas' streams find the
    event by their one-second look at the store.
    """

    def __init__(self, url: str) -> None:
        import redis

        super().__init__()
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        self._warn = _Warner("live events: falling back to polling")
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="csbot-redis-events", daemon=True)
        self._thread.start()
        self._listening.wait(2.0)

    def notify(self, *channels: str) -> None:
        if not self._listening.is_set():
            super().notify(*channels)  # no subscription now: at least this process hears it
        try:
            self.client.publish(CHANNEL, json.dumps(channels))
        except Exception as err:  # noqa: BLE001
            self._warn(err)
            if self._listening.is_set():
                super().notify(*channels)

    def _listen(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self._listening.set()
                backoff = 0.5
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        super().notify(*json.loads(message["data"]))
            except Exception as err:  # noqa: BLE001 - reconnect with backoff; meanwhile streams poll the store
                self._listening.clear()
                self._warn(err)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
