"""More stop sequences than the engine takes: the gateway enforces the rest."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from codeserve.common.sse import data_of
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.server.stops import StreamStops, split_stops, trim_choices
from tests.server.gateway_harness import running_gateway, upstream_models

STOPS = ["\nA", "\nB", "\nC", "\nD", "\nprint", "\nZ"]


def test_split_and_trim() -> None:
    engine, extra = split_stops(STOPS, 4)
    assert engine == STOPS[:4] and extra == ["\nprint", "\nZ"]
    choices = [
        {"text": "x = 1\nZ\nprint(x)", "finish_reason": "length"},
        {"text": "y = 2", "finish_reason": "length"},
    ]
    trim_choices(choices, extra)
    assert choices[0] == {"text": "x = 1", "finish_reason": "stop", "stop_reason": "\nZ"}
    assert choices[1] == {"text": "y = 2", "finish_reason": "length"}


def test_stream_stop_spanning_chunks_is_caught() -> None:
    stops = StreamStops(["\nprint"], candidates=2)
    sent: dict[int, str] = {0: "", 1: ""}
    pieces = [(0, "a = 1"), (1, "b"), (0, "\npr"), (1, "\np"), (0, "int(a)"), (1, "ass")]
    for index, text in pieces:
        chunk = {"choices": [{"index": index, "text": text, "finish_reason": None}]}
        if stops.feed(chunk):
            for choice in chunk["choices"]:
                sent[choice["index"]] += choice["text"]
    assert sent[0] == "a = 1" and 0 in stops.stopped
    assert sent[1] == "b\npass"  # "\npass" cannot start "\nprint": released in full
    final = {"choices": [{"index": 1, "text": "", "finish_reason": "length"}]}
    assert stops.feed(final)
    assert stops.all_stopped and stops.should_abort


def test_chat_chunks_use_delta_content() -> None:
    stops = StreamStops(["```"], candidates=1, field="content")
    chunk = {"choices": [{"index": 0, "delta": {"content": "code``` more"}, "finish_reason": None}]}
    assert stops.feed(chunk)
    assert chunk["choices"][0]["delta"]["content"] == "code"
    assert chunk["choices"][0]["finish_reason"] == "stop"


async def test_gateway_applies_stops_beyond_engine_limit() -> None:
    config = MockConfig(completion_text="    return a\nprint(a)\nmore words here", itl_ms=20)
    async with MockServer(config) as engine_url:
        models = upstream_models({"coder": [engine_url]})
        async with (
            running_gateway(models) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            body = {
                "model": "coder",
                "prompt": "def f(a):\n",
                "max_tokens": 60,
                "n": 2,
                "stop": STOPS,
            }
            unary = (await http.post("/v1/completions", json=body)).json()
            assert [c["text"] for c in unary["choices"]] == ["    return a"] * 2
            assert {c["finish_reason"] for c in unary["choices"]} == {"stop"}

            started = asyncio.get_running_loop().time()
            resp = await http.post("/v1/completions", json={**body, "stream": True})
            elapsed = asyncio.get_running_loop().time() - started
            events = [data.decode() for data in data_of(resp.content)]
            assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
            texts = {0: "", 1: ""}
            for event in events[:-1]:
                for choice in orjson.loads(event)["choices"]:
                    texts[choice["index"]] += choice["text"]
            assert texts == {0: "    return a", 1: "    return a"}
            # The stream ended at the stop, not after 60 tokens x 20 ms.
            assert elapsed < 0.6

            too_much = await http.post("/v1/completions", json={**body, "logprobs": 1})
            assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "stop"
