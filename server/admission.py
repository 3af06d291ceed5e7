"""Per-model backpressure: a cap on requests in flight plus a bounded wait queue. Past both, a
request is refused at once (429) instead of piling up inside the engine."""

from __future__ import annotations

import asyncio
from collections import deque

from codeserve.server.errors import OverloadedError


class Admission:
    def __init__(self, model: str, max_in_flight: int, max_queue: int, timeout_s: float) -> None:
        self.model = model
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _overloaded(self, why: str) -> OverloadedError:
        return OverloadedError(
            f"model {self.model!r} is overloaded ({why}); retry later",
            headers={"Retry-After": "1"},
        )

    def try_enter(self) -> bool:
        """Take a free slot now (True) or report that the caller must queue (False). Refuses at
        once (OverloadedError) when the queue is full too: no waiting, no task."""
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return True
        if len(self._waiters) >= self.max_queue:
            raise self._overloaded(f"{self.in_flight} in flight, {self.queued} queued")
        return False

    async def acquire(self) -> None:
        if self.try_enter():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except asyncio.TimeoutError:
            self._forget(waiter)
            raise self._overloaded(f"queued for more than {self.timeout_s:g}s") from None
        except asyncio.CancelledError:
            self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            # The slot was handed over just as we gave up: pass it on.
            self.release()
            return
        waiter.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight unchanged
                return
        self.in_flight -= 1
