"""Per-model backpressure: a cap on requests in flight, a bounded queue, then a fast 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from tests.server.gateway_harness import running_gateway, upstream_models
from tests.server.observe import metric, until

BODY = {"model": "coder", "prompt": "x", "max_tokens": 1}
OVERLOADED = {"type": "rate_limit_error", "param": None, "code": "overloaded"}


@pytest.fixture
async def slow_engine() -> AsyncIterator[MockServer]:
    server = MockServer(MockConfig(ttft_ms=800))
    await server.start()
    yield server
    await server.stop()


async def timed_post(http: httpx.AsyncClient, body: dict) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    resp = await http.post("/v1/completions", json=body)
    return resp, time.perf_counter() - started


async def test_past_in_flight_and_queue_a_fast_429(slow_engine: MockServer) -> None:
    models = upstream_models({"coder": [slow_engine.url], "other": [slow_engine.url]})
    async with (
        running_gateway(models, max_in_flight=2, max_queue=2) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        admitted = [asyncio.create_task(timed_post(http, BODY)) for _ in range(4)]
        await until(lambda: slow_engine.stats.running == 2, 2, "two requests in flight")
        metrics = (await http.get("/metrics")).text
        assert metric(metrics, 'codeserve_queue_length{model="coder"}') == 2
        assert metric(metrics, 'codeserve_requests_in_flight{model="coder"}') == 2

        refused = await asyncio.gather(*(timed_post(http, BODY) for _ in range(3)))
        # Another model has its own queue: still admitted while "coder" is full.
        other = await http.post("/v1/completions", json={**BODY, "model": "other"})
        done = await asyncio.gather(*admitted)
        metrics = (await http.get("/metrics")).text

    for resp, seconds in refused:
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "1"
        error = resp.json()["error"]
        assert {k: error[k] for k in OVERLOADED} == OVERLOADED
        assert error["message"] == (
            "model 'coder' is overloaded (2 in flight, 2 queued); retry later"
        )
        assert seconds < 0.2  # refused at once, not after waiting for a slot
    assert other.status_code == 200
    assert all(resp.status_code == 200 for resp, _ in done)
    assert slow_engine.stats.max_running == 3  # two of "coder" plus the one of "other"
    assert slow_engine.stats.received == 5
    assert metric(metrics, 'codeserve_requests_total{model="coder",status="429"}') == 3
    assert metric(metrics, 'codeserve_queue_length{model="coder"}') == 0


async def test_queued_too_long_is_429(slow_engine: MockServer) -> None:
    async with (
        running_gateway(
            upstream_models({"coder": [slow_engine.url]}),
            max_in_flight=1,
            max_queue=4,
            queue_timeout_s=0.2,
        ) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        first = asyncio.create_task(timed_post(http, BODY))
        await until(lambda: slow_engine.stats.running == 1, 2, "one request in flight")
        waited, seconds = await timed_post(http, BODY)
        assert (await first)[0].status_code == 200
    assert waited.status_code == 429 and 0.2 <= seconds < 0.6
    assert waited.json()["error"]["message"] == (
        "model 'coder' is overloaded (queued for more than 0.2s); retry later"
    )
    assert slow_engine.stats.received == 1


async def test_cancelled_queued_request_leaves_the_queue_quietly(slow_engine: MockServer) -> None:
    async with (
        running_gateway(
            upstream_models({"coder": [slow_engine.url]}), max_in_flight=1, max_queue=3
        ) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        first = asyncio.create_task(timed_post(http, BODY))
        await until(lambda: slow_engine.stats.running == 1, 2, "one request in flight")
        quitter = asyncio.create_task(
            http.post("/v1/completions", json={**BODY, "prompt": "quitter"}, timeout=0.3)
        )
        patient = asyncio.create_task(timed_post(http, {**BODY, "prompt": "patient"}))
        await asyncio.sleep(0.1)
        assert (
            metric((await http.get("/metrics")).text, 'codeserve_queue_length{model="coder"}') == 2
        )
        with pytest.raises(httpx.ReadTimeout):
            await quitter
        # The quitter left the queue as soon as its client hung up, long before a slot opened.
        await asyncio.sleep(0.1)
        assert (
            metric((await http.get("/metrics")).text, 'codeserve_queue_length{model="coder"}') == 1
        )
        assert (await first)[0].status_code == 200
        resp, _ = await patient
        metrics = (await http.get("/metrics")).text
    assert resp.status_code == 200
    # Served in the slot the first one freed: the quitter never reached the engine (counted,
    # not timed: wall-clock bounds flake on a loaded 2-core machine).
    assert slow_engine.stats.received == 2
    assert slow_engine.stats.max_running == 1
    assert metric(metrics, 'codeserve_requests_total{model="coder",status="499"}') == 1
    assert metric(metrics, 'codeserve_queue_length{model="coder"}') == 0
    assert metric(metrics, 'codeserve_requests_in_flight{model="coder"}') == 0
