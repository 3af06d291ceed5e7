"""A client that goes away aborts the engine request (the mock engine counts the abort)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from tests.server.gateway_harness import running_gateway, upstream_models
from tests.server.observe import metric, until


@pytest.fixture
async def engine() -> AsyncIterator[MockServer]:
    server = MockServer(MockConfig(itl_ms=50, ttft_ms=0))
    await server.start()
    yield server
    await server.stop()


async def test_dropped_stream_aborts_the_engine_request(engine: MockServer) -> None:
    async with (
        running_gateway(upstream_models({"coder": [engine.url]})) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        body = {"model": "coder", "prompt": "x", "max_tokens": 200, "stream": True}
        async with http.stream("POST", "/v1/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.aiter_lines()
            got = [line async for line in _take(lines, 3)]
            assert all(line.startswith("data: {") for line in got)
        # Leaving the block closed the connection after three of 200 tokens (10 s of stream).
        await until(lambda: engine.stats.aborted == 1, 1.0, "the engine saw the abort")
        assert engine.stats.running == 0 and engine.stats.completed == 0
        assert engine.stats.output_tokens < 20
        metrics = (await http.get("/metrics")).text
    assert metric(metrics, 'codeserve_requests_total{model="coder",status="499"}') == 1
    assert metric(metrics, 'codeserve_requests_in_flight{model="coder"}') == 0


async def test_dropped_unary_request_aborts_the_engine_request(engine: MockServer) -> None:
    engine.upstream.apply_patch({"ttft_ms": 10_000})
    async with (
        running_gateway(upstream_models({"coder": [engine.url]})) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/completions", json={"model": "coder", "prompt": "x"}, timeout=0.5)
        await until(lambda: engine.stats.aborted == 1, 1.0, "the engine saw the abort")
        assert engine.stats.running == 0
        metrics = (await http.get("/metrics")).text
    assert metric(metrics, 'codeserve_requests_total{model="coder",status="499"}') == 1
    assert metric(metrics, 'codeserve_requests_in_flight{model="coder"}') == 0


async def test_aborted_request_frees_its_replica() -> None:
    """After a client drops a request waiting on a replica, that replica is not counted busy
    forever: later traffic still spreads over both replicas."""
    slow = MockConfig(ttft_ms=10_000)
    a, b = MockServer(slow), MockServer(slow)
    await a.start()
    await b.start()
    try:
        async with (
            running_gateway(upstream_models({"coder": [a.url, b.url]})) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            body = {"model": "coder", "prompt": "x", "max_tokens": 1}
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/completions", json=body, timeout=0.5)
            await until(lambda: a.stats.aborted + b.stats.aborted == 1, 1.0, "the abort")
            for mock in (a, b):
                mock.upstream.apply_patch({"ttft_ms": 0})
            for _ in range(6):
                assert (await http.post("/v1/completions", json=body)).status_code == 200
        assert a.stats.completed == 3 and b.stats.completed == 3
    finally:
        await a.stop()
        await b.stop()


async def _take(lines: AsyncIterator[str], count: int) -> AsyncIterator[str]:
    taken = 0
    async for line in lines:
        if line:
            yield line
            taken += 1
            if taken == count:
                return
