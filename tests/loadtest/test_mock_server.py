"""The mock upstream speaks vLLM's wire format and its delays, queueing and faults are real."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest

from codeserve.common.sse import DONE, SSEDecoder
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import (
    MockServer,
    MockServerProcess,
    MockServerThread,
    config_to_args,
)


async def _sse(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> list[tuple[float, Any]]:
    """(arrival time, parsed event) for each SSE event; '[DONE]' stays a string."""
    events: list[tuple[float, Any]] = []

    def take(data: bytes) -> None:
        events.append((time.perf_counter(), "[DONE]" if data == DONE else orjson.loads(data)))

    decoder = SSEDecoder(take)
    async with session.post(url, json={**body, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for piece in resp.content.iter_any():
            decoder.feed(piece)
    return events


async def _stats(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with session.get(url + "/mock/stats") as resp:
        return await resp.json()


async def test_stream_interleaves_candidates_and_ends_with_usage() -> None:
    async with MockServer() as url, aiohttp.ClientSession() as s:
        body = {
            "model": "asked",
            "prompt": "a b c d",
            "max_tokens": 3,
            "n": 2,
            "stream_options": {"include_usage": True},
        }
        events = await _sse(s, url + "/v1/completions", body)
    payloads = [e for _, e in events]
    assert payloads[-1] == "[DONE]"
    usage_chunk = payloads[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    chunks = payloads[:-2]
    assert [c["choices"][0]["index"] for c in chunks] == [0, 1, 0, 1, 0, 1]
    assert all(c["model"] == "asked" and c["object"] == "text_completion" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["length"] * 2


async def test_whole_answers_echo_usage_and_logprobs() -> None:
    async with MockServer(MockConfig(token_text="x")) as url, aiohttp.ClientSession() as s:
        body = {"model": "m", "prompt": "p q", "max_tokens": 4, "n": 3, "echo": True, "logprobs": 0}
        async with s.post(url + "/v1/completions", json=body) as resp:
            data = await resp.json()
        async with s.post(
            url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        ) as resp:
            chat = await resp.json()
    assert [c["text"] for c in data["choices"]] == ["p qxxxx"] * 3
    assert data["usage"]["completion_tokens"] == 12
    assert data["choices"][0]["logprobs"]["text_offset"] == [3, 4, 5, 6]
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "xx"}


async def test_chat_stream_starts_with_role_and_respects_completion_text() -> None:
    config = MockConfig(completion_text="return a + b")
    async with MockServer(config) as url, aiohttp.ClientSession() as s:
        body = {"model": "m", "messages": [{"role": "user", "content": "add"}], "max_tokens": 10}
        events = await _sse(s, url + "/v1/chat/completions", body)
    chunks = [e for _, e in events if e != "[DONE]"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "return a + b"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_delays_follow_ttft_and_itl() -> None:
    async with MockServer(MockConfig(ttft_ms=80, itl_ms=30)) as url, aiohttp.ClientSession() as s:
        sent = time.perf_counter()
        events = await _sse(
            s, url + "/v1/completions", {"model": "m", "prompt": "x", "max_tokens": 5}
        )
    times = [t for t, e in events if e != "[DONE]"]
    assert len(times) == 5
    assert 0.075 <= times[0] - sent < 0.2
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(gaps) / len(gaps) == pytest.approx(0.030, abs=0.008)


async def test_concurrency_cap_queues_and_reports_gauges() -> None:
    config = MockConfig(max_concurrency=1, ttft_ms=150)
    async with MockServer(config) as url, aiohttp.ClientSession() as s:
        body = {"model": "m", "prompt": "x", "max_tokens": 1}
        started = time.perf_counter()
        tasks = [asyncio.create_task(s.post(url + "/v1/completions", json=body)) for _ in range(3)]
        await asyncio.sleep(0.05)
        async with s.get(url + "/metrics") as resp:
            metrics = await resp.text()
        responses = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        for r in responses:
            r.release()
        stats = await _stats(s, url)
    assert 'vllm:num_requests_running{model_name="mock-model"} 1.0' in metrics
    assert 'vllm:num_requests_waiting{model_name="mock-model"} 2.0' in metrics
    assert elapsed >= 0.44  # served one after another
    assert stats["max_running"] == 1 and stats["completed"] == 3


async def test_client_disconnect_aborts_generation() -> None:
    async with MockServer(MockConfig(itl_ms=20)) as url, aiohttp.ClientSession() as s:
        body = {"model": "m", "prompt": "x", "max_tokens": 1000, "stream": True}
        async with s.post(url + "/v1/completions", json=body) as resp:
            await resp.content.readline()
        # leaving the block closes the connection mid-stream
        for _ in range(100):
            stats = await _stats(s, url)
            if stats["aborted"]:
                break
            await asyncio.sleep(0.02)
    assert stats["aborted"] == 1 and stats["running"] == 0 and stats["completed"] == 0
    assert stats["output_tokens"] < 100


async def test_injected_failures_hangs_and_deaths() -> None:
    config = MockConfig(fail_first=1, fail_status=503)
    async with MockServer(config) as url, aiohttp.ClientSession() as s:
        body = {"model": "m", "prompt": "x", "max_tokens": 5, "stream": True}
        async with s.post(url + "/v1/completions", json=body) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["message"] == "injected failure"
        async with s.post(url + "/v1/completions", json=body) as resp:
            assert resp.status == 200
            await resp.read()
        server_stats = await _stats(s, url)
        assert server_stats["failed"] == 1 and server_stats["completed"] == 1

    async with (
        MockServer(MockConfig(die_rate=1.0, die_after_tokens=2)) as url,
        aiohttp.ClientSession() as s,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.post(url + "/v1/completions", json=body) as resp:
                await resp.read()
        assert (await _stats(s, url))["died"] == 1

    async with MockServer(MockConfig(hang_rate=1.0)) as url, aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            timeout = aiohttp.ClientTimeout(total=0.3)
            async with s.post(url + "/v1/completions", json=body, timeout=timeout) as resp:
                await resp.read()
        await asyncio.sleep(0.1)
        stats = await _stats(s, url)
        assert stats["hung"] == 1 and stats["aborted"] == 1 and stats["running"] == 0


async def test_bad_requests_get_openai_errors_and_config_patches_apply() -> None:
    async with (
        MockServer(MockConfig(strict_model=True, model_name="only")) as url,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(url + "/v1/completions", json={"model": "other", "prompt": "x"}) as resp:
            assert resp.status == 404
            assert "does not exist" in (await resp.json())["error"]["message"]
        async with s.post(
            url + "/v1/completions", json={"model": "only", "prompt": "x", "n": 0}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "n"
        async with s.post(url + "/mock/config", json={"health_status": 503}) as resp:
            assert resp.status == 200
        async with s.get(url + "/health") as resp:
            assert resp.status == 503
        async with s.post(url + "/mock/config", json={"fail_rate": 7}) as resp:
            assert resp.status == 400


def test_thread_and_process_variants_serve_requests() -> None:
    import httpx

    thread = MockServerThread(MockConfig(model_name="t"))
    with thread as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "t"
        thread.patch(health_status=503)
        assert httpx.get(url + "/health").status_code == 503
        assert thread.stats.received == 0
    config = MockConfig(model_name="p", itl_ms=1.5, strict_model=True)
    assert config_to_args(config) == ["--model-name", "p", "--strict-model", "--itl-ms", "1.5"]
    with MockServerProcess(config) as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "p"


def test_cli_rejects_bad_flags_in_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeserve.loadtest.mock_server",
            "--hang-rate",
            "0.7",
            "--die-rate",
            "0.7",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "must not exceed 1" in proc.stderr
