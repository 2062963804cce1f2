"""Live delivery: wakes the streams waiting on a conversation when something was appended to it.

The database is the record (every event has its id there, so a client reconnecting with ``Last-Event-ID``
reads what it missed from the store); the bus only says "look again now". In-process, so a stream in
another worker process finds new events by its one-second fallback look instead. A later issue puts
``notify`` on Redis for several replicas; the interface stays these two methods.
"""

from __future__ import annotations

import asyncio
import threading

INBOX = "*inbox*"  # the channel every agent's inbox listens to: any conversation changed


class EventBus:
    """``notify(channel)`` from any thread; ``await wait(channel, timeout)`` in the server's event loop.

    Example:
        >>> bus = EventBus()
        >>> bus.notify("session-1")   # nobody waiting: nothing happens
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def notify(self, *channels: str) -> None:
        with self._lock:
            waiters = [w for c in channels for w in self._waiters.get(c, ())]
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, channel: str, timeout: float) -> bool:
        """True when ``channel`` was notified within ``timeout`` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(channel, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters[channel].discard(waiter)
                if not self._waiters[channel]:
                    del self._waiters[channel]
