"""Sends the load and times every streamed chunk.

Open loop: the arrival schedule is fixed up front and each request's latency counts from its
intended send time, so a server that falls behind shows its queueing in the figures instead of
silently slowing the sender down (coordinated omission). The lag between intended and actual
send is recorded per request. Closed loop: `concurrency` users, each sending again as soon as
its previous answer ends (intended = actual send).
"""

from __future__ import annotations

import asyncio
import gc
import random
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson

from codeserve.loadtest.arrivals import schedule
from codeserve.loadtest.http_client import ConnectFailed, ResponseBroken, StreamingClient
from codeserve.loadtest.protocol import LoadtestRecord, RunSpec
from codeserve.loadtest.records import StreamTimer
from codeserve.loadtest.workloads import PreparedRequest, Workload

T = TypeVar("T")

# select(2) honours sub-millisecond timeouts where epoll rounds up to whole milliseconds, which
# alone would put ~1 ms of send lag on every open-loop request; it only handles fds < 1024.
_SELECT_FD_BUDGET = 900


def error_message(body: bytes) -> str:
    """The message of an OpenAI error object, else the start of the body."""
    try:
        return str(orjson.loads(body)["error"]["message"])[:300]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:300].decode(errors="replace")


class LoadRunner:
    def __init__(
        self, spec: RunSpec, workload: Workload, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.spec = spec
        self.workload = workload
        self.clock = clock
        self.records: list[LoadtestRecord] = []
        self.origin = 0.0  # clock value of the run's start; records are relative to it
        self._picks = random.Random(spec.seed + 1)
        self._scoring = random.Random(spec.seed + 2)
        self._issued = 0
        self._stopping = False
        path = "/chat/completions" if workload.spec.endpoint == "chat" else "/completions"
        headers = {"Content-Type": "application/json"}
        if spec.api_key:
            headers["Authorization"] = f"Bearer {spec.api_key}"
        self._client = StreamingClient(spec.base_url, headers, spec.timeout_s, clock)
        # Whole requests (head and body) encoded once, before anything is sent.
        self._wire = {id(r): self._client.request_bytes(path, r.body) for r in workload.pool}

    def stop(self) -> None:
        """Stop sending; requests in flight still finish and are recorded."""
        self._stopping = True

    # -- one request -----------------------------------------------------------------------

    def _next_request(self) -> tuple[int, PreparedRequest, bool]:
        """Sequence number, body and whether to keep texts for scoring; drawn in send order so
        the same seed sends the same bodies."""
        seq = self._issued
        self._issued += 1
        keep = self.spec.score_fraction > 0 and self._scoring.random() < self.spec.score_fraction
        return seq, self.workload.pick(self._picks), keep

    def _is_warmup(self, seq: int, intended: float) -> bool:
        return seq < self.spec.warmup_requests or intended - self.origin < self.spec.warmup_s

    async def _send(self, seq: int, req: PreparedRequest, keep: bool, intended: float) -> None:
        n = self.workload.spec.n
        timer = StreamTimer(n, keep_text=keep)
        clock = self.clock
        status: int | None = None
        error: str | None = None
        detail: str | None = None
        sent = clock()
        try:
            status, error_body = await self._client.post(self._wire[id(req)], timer.feed)
            if status != 200:
                error, detail = f"http_{status}", error_message(error_body)
            else:
                error = timer.outcome_error()
        except TimeoutError:
            error = "timeout"
        except ResponseBroken as exc:
            error, detail = "connection_dropped", str(exc)
        except ConnectFailed as exc:
            error, detail = "connection_error", str(exc)
        done = clock()
        origin = self.origin
        self.records.append(
            LoadtestRecord.model_construct(
                seq=seq,
                warmup=self._is_warmup(seq, intended),
                intended_s=intended - origin,
                sent_s=sent - origin,
                done_s=done - origin,
                n=n,
                fim=req.fim,
                prompt_tokens=timer.prompt_tokens or req.prompt_tokens,
                completion_tokens=timer.completion_tokens,
                status=status,
                error=error,
                error_detail=detail,
                task_id=req.task_id,
                candidates=timer.candidates(intended),
            )
        )

    # -- traffic shapes --------------------------------------------------------------------

    def _more_closed_loop(self) -> bool:
        spec = self.spec
        if self._stopping:
            return False
        if spec.num_requests is not None:
            return self._issued < spec.warmup_requests + spec.num_requests
        assert spec.duration_s is not None
        return self.clock() - self.origin < spec.warmup_s + spec.duration_s

    async def _user(self) -> None:
        while self._more_closed_loop():
            seq, req, keep = self._next_request()
            await self._send(seq, req, keep, self.clock())

    def _open_loop_offsets(self) -> list[float]:
        spec = self.spec
        if spec.num_requests is not None:
            return schedule(
                spec.arrival, seed=spec.seed, count=spec.warmup_requests + spec.num_requests
            )
        assert spec.duration_s is not None
        return schedule(spec.arrival, seed=spec.seed, duration_s=spec.warmup_s + spec.duration_s)

    async def _open_loop(self) -> None:
        slots = asyncio.Semaphore(self.spec.max_inflight)
        in_flight: set[asyncio.Task[None]] = set()

        async def send_then_free(
            seq: int, req: PreparedRequest, keep: bool, intended: float
        ) -> None:
            try:
                await self._send(seq, req, keep, intended)
            finally:
                slots.release()

        for offset in self._open_loop_offsets():
            intended = self.origin + offset
            delay = intended - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                break
            # At the in-flight cap the request waits here; its latency still counts from
            # `intended`, and the wait shows up as send lag.
            await slots.acquire()
            seq, req, keep = self._next_request()
            task = asyncio.create_task(send_then_free(seq, req, keep, intended))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)

    async def run(self) -> list[LoadtestRecord]:
        # A full collection walks every object the process holds (modules, the request pool):
        # tens of milliseconds that would land on some request's send time. Freezing the heap
        # as it is now leaves the collector only what the run itself creates.
        gc.collect()
        gc.freeze()
        try:
            # A short lead so the first intended send is not already late from setup work.
            self.origin = self.clock() + 0.02
            await asyncio.sleep(0.02)
            if self.spec.arrival.mode == "closed":
                assert self.spec.arrival.concurrency is not None
                await asyncio.gather(*(self._user() for _ in range(self.spec.arrival.concurrency)))
            else:
                await self._open_loop()
        finally:
            gc.unfreeze()
            self._client.close()
        self.records.sort(key=lambda r: r.seq)
        return self.records


def run_with_precise_timers(coro: Coroutine[Any, Any, T], connections: int) -> T:
    """Run `coro` on an event loop whose timers have sub-millisecond resolution when the
    connection count allows `select`, else on the default loop."""
    if connections >= _SELECT_FD_BUDGET:
        return asyncio.run(coro)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def connection_budget(spec: RunSpec) -> int:
    """Connections the run may hold open at once."""
    if spec.arrival.mode == "closed":
        return spec.arrival.concurrency or 1
    return spec.max_inflight
