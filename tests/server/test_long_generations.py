"""A busy engine is not a dead engine: long generations succeed, a request that outlives its
deadline fails alone with an error that names the limit, and late health probes of an engine
that is generating do not take it out of rotation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import orjson

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.server.engines.supervisor import tree_cpu_seconds
from tests.server.gateway_harness import running_gateway, upstream_models


async def test_600_token_generations_at_250ms_a_token_all_succeed() -> None:
    """4 non-streamed and 2 streamed requests of 600 tokens at 250 ms a token (150 s each, past
    the 120 s read timeout that used to cut non-streamed ones), while the engine answers its
    health probes late: all 200, and the model serves throughout."""
    config = MockConfig(itl_ms=250, output_tokens=600, busy_health_delay_ms=3000)
    async with MockServer(config) as engine:
        async with running_gateway(upstream_models({"m": [engine]})) as url:
            async with httpx.AsyncClient(base_url=url, timeout=400) as http:
                states: list[tuple[int, str]] = []

                async def watch() -> None:
                    while True:
                        ready = await http.get("/ready", params={"model": "m"})
                        states.append((ready.status_code, ready.json()["models"]["m"]))
                        await asyncio.sleep(1)

                async def unary() -> tuple[int, bytes]:
                    resp = await http.post(
                        "/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 600}
                    )
                    return resp.status_code, resp.content

                async def streamed() -> tuple[int, bytes]:
                    resp = await http.post(
                        "/v1/completions",
                        json={"model": "m", "prompt": "x", "max_tokens": 600, "stream": True},
                    )
                    return resp.status_code, resp.content

                watcher = asyncio.create_task(watch())
                started = time.monotonic()
                results = await asyncio.gather(
                    *(unary() for _ in range(4)), *(streamed() for _ in range(2))
                )
                elapsed = time.monotonic() - started
                watcher.cancel()
    assert [status for status, _ in results] == [200] * 6
    assert elapsed > 149  # they really took the 150 s
    for _, body in results[:4]:
        # Keep-alive whitespace went first (15 s of silence), then the whole answer.
        assert body.startswith(b" ") and not body.startswith(b" " * 11)
        answer = orjson.loads(body)
        assert answer["usage"]["completion_tokens"] == 600
        assert answer["choices"][0]["text"].count("tok") == 600
    for _, body in results[4:]:
        events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
        assert sum(e.count(b"tok") for e in events) == 600
        assert body.rstrip().endswith(b"data: [DONE]")
    assert states and all(status == 200 for status, _ in states), states
    assert {state for _, state in states} <= {"ready", "busy"}
    assert any(state == "busy" for _, state in states), "the late probes were never seen"


async def test_past_the_deadline_fails_alone_and_names_the_limit() -> None:
    """A non-streamed request whose deadline runs out gets a 504 naming the settings to raise;
    the replica stays in rotation (it was slow, not broken): the next request is served."""
    config = MockConfig(itl_ms=100)
    async with MockServer(config) as engine:
        models = upstream_models({"m": [engine]})
        models.models[0].timeouts.idle_s = 0.3
        models.models[0].timeouts.min_tokens_per_s = 20
        async with running_gateway(models, keepalive_s=0) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                # 0.3 s + 20 tokens at 20/s = 1.3 s, against ~2 s of generation: too slow.
                slow = await http.post(
                    "/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 20}
                )
                # 0.3 s + 2 tokens at 20/s = 0.4 s, against ~0.1 s: in time.
                quick = await http.post(
                    "/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 2}
                )
    assert slow.status_code == 504
    error = slow.json()["error"]
    assert error["code"] == "engine_timeout"
    for words in (
        "did not finish within 1 s",
        "timeouts.idle_s",
        "timeouts.min_tokens_per_s",
        "20 output tokens",
        "stream the request",
    ):
        assert words in error["message"], error["message"]
    assert quick.status_code == 200, quick.text


async def test_a_stuck_stream_says_which_limit_ran_out() -> None:
    config = MockConfig(hang_rate=1.0)
    async with MockServer(config) as engine:
        models = upstream_models({"m": [engine]})
        models.models[0].timeouts.idle_s = 0.5
        async with running_gateway(models) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                resp = await http.post(
                    "/v1/completions",
                    json={"model": "m", "prompt": "x", "max_tokens": 4, "stream": True},
                )
    if resp.status_code == 200:  # headers came, then silence: the error is the last event
        message = [e for e in resp.text.split("\n\n") if "error" in e][-1]
    else:
        assert resp.status_code == 504
        message = resp.json()["error"]["message"]
    assert "sent nothing for 0.5 s" in message and "timeouts.idle_s" in message


async def test_keepalive_whitespace_then_a_valid_json_answer() -> None:
    async with MockServer(MockConfig(itl_ms=60)) as engine:
        async with running_gateway(upstream_models({"m": [engine]}), keepalive_s=0.2) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                resp = await http.post(
                    "/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 12}
                )
                quick = await http.post(
                    "/v1/completions", json={"model": "m", "prompt": "x", "max_tokens": 1}
                )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.content.startswith(b" ") and resp.json()["usage"]["completion_tokens"] == 12
    assert not quick.content.startswith(b" ")  # answered before the first keep-alive


async def test_a_stream_waiting_for_its_first_token_gets_sse_comments() -> None:
    """A stream whose first token takes long (queued, or a long prefill on a CPU) gets SSE
    comments meanwhile, which the OpenAI SDK skips: it reads every token as usual."""
    import openai

    async with MockServer(MockConfig(ttft_ms=1000, itl_ms=5)) as engine:
        async with running_gateway(upstream_models({"m": [engine]}), keepalive_s=0.2) as url:
            ask = {"model": "m", "prompt": "x", "max_tokens": 6, "stream": True}
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                raw = await http.post("/v1/completions", json=ask)
            sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            pieces = [
                chunk.choices[0].text
                async for chunk in await sdk.completions.create(**ask)  # type: ignore[call-overload]
                if chunk.choices
            ]
            await sdk.close()
    events = raw.text.split("\n\n")
    comments = [e for e in events if e.startswith(":")]
    assert raw.status_code == 200 and events[0] == ": keep-alive"
    assert 2 <= len(comments) <= 6  # about one per 0.2 s of the 1 s wait, none after it
    assert all(e.startswith("data: ") for e in events[len(comments) :] if e)
    assert len(pieces) == 6


def test_cpu_of_a_stopped_process_tree_makes_no_progress() -> None:
    """The managed engine's busy signal: a working process tree accumulates CPU seconds; a
    SIGSTOPped one does not count."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = tree_cpu_seconds(spin.pid)
        time.sleep(0.5)
        second = tree_cpu_seconds(spin.pid)
        assert second - first > 0.1
        os.kill(spin.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5  # the stop is delivered asynchronously
        while tree_cpu_seconds(spin.pid) != 0.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tree_cpu_seconds(spin.pid) == 0.0
    finally:
        spin.kill()
        spin.wait()
