"""The IDE plugin dialects (Mistral FIM, Ollama, TGI) against fake engines, driven by the real,
unmodified client libraries their users have (`mistralai`, `ollama`, `huggingface_hub`), run in
a worker thread beside the gateway's event loop. A recording engine shows what reached the
engine; the mock engine counts aborts and answers chat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError as HfValidationError

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from tests.server import fim_support
from tests.server.fim_support import RecordingEngine, models_for, recording_engine
from tests.server.gateway_harness import running_gateway
from tests.server.observe import metric, until

try:  # mistralai 2+ moved the client into mistralai.client
    from mistralai.client import Mistral
except ImportError:  # pragma: no cover
    from mistralai import Mistral  # type: ignore[no-redef]

tokenizer_dirs = fim_support.tokenizer_dirs  # the session fixture of demo tokenizers

MIDDLE = "sum(items)\n"
PREFIX = "def total(items):\n    result = "
SUFFIX = "\n    return result\n"
MODELS = ("qwen2.5-coder", "phi-1")  # phi-1: no FIM tokens


@pytest.fixture
async def engine() -> AsyncIterator[RecordingEngine]:
    async with recording_engine(MIDDLE) as fake:
        yield fake


@pytest.fixture
async def gateway(engine: RecordingEngine, tokenizer_dirs: dict[str, Path]) -> AsyncIterator[str]:
    dirs = {name: tokenizer_dirs[name] for name in MODELS}
    async with running_gateway(models_for(dirs, urls=[engine.url])) as url:
        yield url


async def rendered(url: str, model: str, prefix: str, suffix: str) -> list[int]:
    """The FIM prompt the OpenAI spelling (`suffix`) gives: every dialect must send the same."""
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.post(
            "/v1/completions/render", json={"model": model, "prompt": prefix, "suffix": suffix}
        )
    assert resp.status_code == 200, resp.text
    ids: list[int] = resp.json()["prompts"][0]["token_ids"]
    return ids


def mistral(url: str, key: str | None = None) -> Any:
    return Mistral(api_key=key, server_url=url)


# -- Mistral FIM ------------------------------------------------------------------------------


async def test_mistral_fim_complete_and_stream(gateway: str, engine: RecordingEngine) -> None:
    client = mistral(gateway)
    result = await asyncio.to_thread(
        client.fim.complete,
        model="qwen2.5-coder",
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=24,
        min_tokens=1,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        random_seed=7,
    )
    assert result.model == "qwen2.5-coder"
    (choice,) = result.choices
    assert choice.message.content == MIDDLE and choice.finish_reason == "stop"
    assert result.usage.completion_tokens == 3
    sent = engine.bodies[-1]
    assert sent["prompt"] == await rendered(gateway, "qwen2.5-coder", PREFIX, SUFFIX)
    assert sent["stop_token_ids"] and sent["stop"] == ["\n\n"]
    assert (sent["max_tokens"], sent["min_tokens"], sent["seed"], sent["top_p"]) == (24, 1, 7, 0.9)

    def stream() -> list[Any]:
        with client.fim.stream(
            model="qwen2.5-coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=24
        ) as events:
            return [event.data for event in events]

    chunks = await asyncio.to_thread(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == MIDDLE
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_mistral_without_suffix_completes_the_prompt_and_takes_n(
    gateway: str, engine: RecordingEngine
) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        resp = await http.post(
            "/v1/fim/completions",
            json={
                "model": "phi-1",
                "prompt": "import os\n",
                "n": 2,
                "max_tokens": 5,
                "metadata": {"x": 1},
                "prompt_cache_key": "k",
            },
        )
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["object"] == "chat.completion"
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    sent = engine.bodies[-1]
    assert sent["prompt"] == "import os\n" and sent["n"] == 2
    assert "metadata" not in sent and "prompt_cache_key" not in sent


async def test_mistral_errors_are_openai_error_objects(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        cases = [
            ({"model": "nope", "prompt": "x"}, 404, "model"),
            ({"model": "phi-1", "prompt": "x", "suffix": "y"}, 400, "suffix"),
            ({"model": "qwen2.5-coder", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
            ({"model": "qwen2.5-coder", "prompt": 5}, 400, "prompt"),
            ({"model": "qwen2.5-coder"}, 400, "prompt"),
        ]
        for body, status, param in cases:
            resp = await http.post("/v1/fim/completions", json=body)
            assert resp.status_code == status, (body, resp.text)
            assert resp.json()["error"]["param"] == param, resp.text
        resp = await http.post("/v1/fim/completions", content=b"{nope")
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


# -- Ollama -------------------------------------------------------------------------------------


async def test_ollama_generate_with_suffix(gateway: str, engine: RecordingEngine) -> None:
    client = ollama.Client(host=gateway)
    options = {
        "num_predict": 20,
        "temperature": 0.1,
        "top_p": 0.95,
        "top_k": 40,
        "stop": ["\n\n"],
        "seed": 3,
        "num_ctx": 4096,
        "mirostat": 1,
        "made_up": True,
    }
    result = await asyncio.to_thread(
        client.generate,
        model="qwen2.5-coder",
        prompt=PREFIX,
        suffix=SUFFIX,
        options=options,
        raw=True,
    )
    assert result.response == MIDDLE and result.done and result.done_reason == "stop"
    assert result.model == "qwen2.5-coder"
    assert result.prompt_eval_count and result.eval_count == 3
    sent = engine.bodies[-1]
    assert sent["prompt"] == await rendered(gateway, "qwen2.5-coder", PREFIX, SUFFIX)
    assert (
        sent["max_tokens"],
        sent["temperature"],
        sent["top_p"],
        sent["top_k"],
        sent["seed"],
        sent["stop"],
    ) == (20, 0.1, 0.95, 40, 3, ["\n\n"])
    for ignored in ("num_ctx", "mirostat", "made_up", "raw", "options"):
        assert ignored not in sent

    parts = await asyncio.to_thread(
        lambda: list(
            client.generate(model="qwen2.5-coder:latest", prompt=PREFIX, suffix=SUFFIX, stream=True)
        )
    )
    assert "".join(p.response for p in parts) == MIDDLE
    assert [p.done for p in parts][-1] is True and not any(p.done for p in parts[:-1])
    assert parts[-1].eval_count == 3 and parts[-1].done_reason == "stop"


async def test_ollama_streams_ndjson_by_default(gateway: str) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway) as http,
        http.stream("POST", "/api/generate", json={"model": "phi-1", "prompt": "x = "}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) async for line in resp.aiter_lines() if line]
    assert "".join(line["response"] for line in lines) == MIDDLE
    assert lines[-1]["done"] is True


async def test_ollama_load_and_warm_up_calls_answer_at_once(
    gateway: str, engine: RecordingEngine
) -> None:
    client = ollama.Client(host=gateway)
    loaded = await asyncio.to_thread(client.generate, model="qwen2.5-coder")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    chatted = await asyncio.to_thread(client.chat, model="qwen2.5-coder", messages=[])
    assert chatted.done and chatted.message.content == ""
    assert engine.bodies == []


async def test_ollama_model_endpoints(gateway: str) -> None:
    client = ollama.Client(host=gateway)
    listed = await asyncio.to_thread(client.list)
    assert [m.model for m in listed.models] == list(MODELS)
    shown = await asyncio.to_thread(client.show, "qwen2.5-coder")
    assert "insert" in (shown.capabilities or [])
    assert "insert" not in ((await asyncio.to_thread(client.show, "phi-1")).capabilities or [])
    running = await asyncio.to_thread(client.ps)
    assert {m.model for m in running.models} == set(MODELS)
    async with httpx.AsyncClient(base_url=gateway) as http:
        assert (await http.get("/api/version")).json()["version"]


async def test_ollama_errors_are_its_own_shape(gateway: str) -> None:
    client = ollama.Client(host=gateway)
    with pytest.raises(ollama.ResponseError) as info:
        await asyncio.to_thread(client.generate, model="nope", prompt="x")
    assert info.value.status_code == 404 and info.value.error == "model 'nope' not found"
    with pytest.raises(ollama.ResponseError) as info:
        await asyncio.to_thread(client.show, "nope")
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        await asyncio.to_thread(client.generate, model="phi-1", prompt="x", suffix="y")
    assert info.value.status_code == 400 and "fill-in-the-middle" in info.value.error
    async with httpx.AsyncClient(base_url=gateway) as http:
        for body in (
            {"model": "phi-1", "prompt": "x", "options": {"num_predict": "many"}},
            {"model": "phi-1", "prompt": "x", "options": {"temperature": 9}},
            {"model": "phi-1", "prompt": "x", "format": "json"},
            {"model": "phi-1", "prompt": "x", "images": ["aGk="]},
            {"model": "phi-1", "messages": [{"role": "wizard", "content": "x"}]},
            {
                "model": "phi-1",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function"}],
            },
            {"prompt": "x"},
            [1, 2],
            "x",
        ):
            path = "/api/chat" if isinstance(body, dict) and "messages" in body else "/api/generate"
            resp = await http.post(path, json=body)
            assert resp.status_code == 400, (body, resp.text)
            assert isinstance(resp.json()["error"], str), resp.text
        resp = await http.post("/api/generate", content=b"\xff")
        assert resp.status_code == 400 and isinstance(resp.json()["error"], str)
        resp = await http.post("/api/pull", json={"model": "x"})
        assert resp.status_code == 404 and "not supported" in resp.json()["error"]


async def test_ollama_chat(tokenizer_dirs: dict[str, Path]) -> None:
    async with (
        MockServer(MockConfig(completion_text="Hello there friend")) as mock_url,
        running_gateway(
            models_for({"qwen2.5-coder": tokenizer_dirs["qwen2.5-coder"]}, urls=[mock_url])
        ) as url,
    ):
        client = ollama.Client(host=url)
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        answer = await asyncio.to_thread(
            client.chat, model="qwen2.5-coder", messages=messages, options={"num_predict": 8}
        )
        assert answer.message.role == "assistant"
        assert answer.message.content.strip() == "Hello there friend" and answer.done
        parts = await asyncio.to_thread(
            lambda: list(client.chat(model="qwen2.5-coder", messages=messages, stream=True))
        )
        assert "".join(p.message.content or "" for p in parts).strip() == "Hello there friend"
        assert parts[-1].done and parts[-1].eval_count == 3


# -- Text Generation Inference ---------------------------------------------------------------


async def test_tgi_text_generation_and_stream(gateway: str, engine: RecordingEngine) -> None:
    client = InferenceClient(base_url=gateway)  # the first model: qwen2.5-coder
    text = await asyncio.to_thread(
        client.text_generation, "<|fim_prefix|>def f():", max_new_tokens=12, stop=["\n\n"], seed=5
    )
    assert text == MIDDLE
    sent = engine.bodies[-1]
    # A FIM prompt the plugin rendered itself reaches the engine as it is; no sampling asked
    # for: greedy, as TGI.
    assert sent["prompt"] == "<|fim_prefix|>def f():"
    assert (sent["max_tokens"], sent["stop"], sent["seed"], sent["temperature"]) == (
        12,
        ["\n\n"],
        5,
        0.0,
    )

    details = await asyncio.to_thread(
        client.text_generation, "x", details=True, do_sample=True, temperature=0.5, top_k=10
    )
    assert details.generated_text == MIDDLE
    assert details.details.finish_reason == "eos_token"
    assert details.details.generated_tokens == 3
    assert (engine.bodies[-1]["temperature"], engine.bodies[-1]["top_k"]) == (0.5, 10)

    tokens = await asyncio.to_thread(
        lambda: list(client.text_generation("x", max_new_tokens=12, stream=True))
    )
    assert "".join(tokens) == MIDDLE
    events = await asyncio.to_thread(
        lambda: list(
            client.text_generation(
                "x", max_new_tokens=12, stream=True, details=True, return_full_text=True
            )
        )
    )
    assert events[-1].generated_text == "x" + MIDDLE
    assert events[-1].details.generated_tokens == 3
    assert all(e.generated_text is None for e in events[:-1])


async def test_tgi_routes_and_model_paths(gateway: str, engine: RecordingEngine) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        resp = await http.post(
            "/generate",
            json={
                "inputs": "a",
                "parameters": {
                    "max_new_tokens": 4,
                    "watermark": True,
                    "truncate": 10,
                    "typical_p": 0.5,
                },
            },
        )
        assert resp.status_code == 200 and resp.json() == {"generated_text": MIDDLE}
        assert engine.bodies[-1]["model"] == "fake"
        resp = await http.post("/generate", json={"inputs": "a", "model": "phi-1"})
        assert resp.status_code == 200
        resp = await http.post("/models/phi-1", json={"inputs": "a", "stream": False})
        assert resp.json() == [{"generated_text": MIDDLE}]
        async with http.stream(
            "POST", "/models/phi-1/generate_stream", json={"inputs": "a"}
        ) as stream:
            events = [
                json.loads(line[5:])
                async for line in stream.aiter_lines()
                if line.startswith("data:")
            ]
        assert "".join(e["token"]["text"] for e in events) == MIDDLE
        info = (await http.get("/info")).json()
        assert info["model_id"] == "qwen2.5-coder" and info["max_best_of"] == 1
        assert (await http.get("/models/phi-1/info")).json()["model_id"] == "phi-1"


async def test_tgi_errors_are_its_own_shape(gateway: str) -> None:
    client = InferenceClient(base_url=gateway)
    with pytest.raises(HfValidationError):
        await asyncio.to_thread(client.text_generation, "x", temperature=0.0)
    async with httpx.AsyncClient(base_url=gateway) as http:
        for path, body in (
            ("/generate", {"inputs": ""}),
            ("/generate", {"parameters": {}}),
            ("/generate", {"inputs": "x", "parameters": {"best_of": 2}}),
            ("/generate", {"inputs": "x", "parameters": {"grammar": {}}}),
            ("/generate_stream", {"inputs": "x", "parameters": {"top_k": -3}}),
            ("/", {"inputs": "x", "parameters": {"max_new_tokens": "lots"}}),
            ("/generate", [1]),
        ):
            resp = await http.post(path, json=body)
            assert resp.status_code == 422, (body, resp.text)
            assert resp.json()["error_type"] == "validation", resp.text
        resp = await http.post("/models/nope/generate", json={"inputs": "x"})
        assert resp.status_code == 404 and resp.json()["error_type"] == "validation"


# -- every dialect: auth, metrics, backpressure, disconnects, long answers ------------------


async def test_auth_with_each_client(
    engine: RecordingEngine, tokenizer_dirs: dict[str, Path]
) -> None:
    models = models_for({"qwen2.5-coder": tokenizer_dirs["qwen2.5-coder"]}, urls=[engine.url])
    async with running_gateway(models, api_keys=["sekrit"]) as url:
        bearer = {"Authorization": "Bearer sekrit"}
        done = await asyncio.to_thread(
            mistral(url, "sekrit").fim.complete, model="qwen2.5-coder", prompt="a", suffix="b"
        )
        assert done.choices[0].message.content == MIDDLE
        answer = await asyncio.to_thread(
            ollama.Client(host=url, headers=bearer).generate,
            model="qwen2.5-coder",
            prompt="a",
            suffix="b",
        )
        assert answer.response == MIDDLE
        text = await asyncio.to_thread(
            InferenceClient(base_url=url, api_key="sekrit").text_generation, "a"
        )
        assert text == MIDDLE
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.post(
                "/v1/fim/completions", json={"model": "qwen2.5-coder", "prompt": "a"}
            )
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
            for path, body in (
                ("/api/generate", {"model": "qwen2.5-coder", "prompt": "a"}),
                ("/api/tags", None),
            ):
                refused = await http.request("POST" if body else "GET", path, json=body)
                assert refused.status_code == 401 and "API key" in refused.json()["error"]
            refused = await http.post("/generate", json={"inputs": "a"})
            assert refused.status_code == 401
            assert (
                refused.json()["error_type"] == "validation"
                and "API key" in refused.json()["error"]
            )
        with pytest.raises(ollama.ResponseError) as info:
            await asyncio.to_thread(ollama.Client(host=url).list)
        assert info.value.status_code == 401 and "API key" in info.value.error


async def test_requests_are_counted_by_dialect(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        await http.post(
            "/v1/fim/completions",
            json={"model": "qwen2.5-coder", "prompt": "a", "suffix": "b", "stream": True},
        )
        await http.post(
            "/api/generate", json={"model": "qwen2.5-coder", "prompt": "a", "stream": False}
        )
        await http.post("/api/generate", json={"model": "nope", "prompt": "a"})
        await http.post("/generate", json={"inputs": "a"})
        await http.post("/infill", json={"input_prefix": "a", "input_suffix": "b"})
        text = (await http.get("/metrics")).text
    series = 'codeserve_dialect_requests_total{{dialect="{}",model="{}",status="{}"}}'
    assert metric(text, series.format("mistral", "qwen2.5-coder", "200")) == 1
    assert metric(text, series.format("ollama", "qwen2.5-coder", "200")) == 1
    assert metric(text, series.format("ollama", "", "404")) == 1
    assert metric(text, series.format("tgi", "qwen2.5-coder", "200")) == 1
    assert metric(text, series.format("llama.cpp", "qwen2.5-coder", "200")) == 1
    # The serving path counted them too, by model as ever.
    assert metric(text, 'codeserve_requests_total{model="qwen2.5-coder",status="200"}') == 4


def coder(dirs: dict[str, Path], mock: MockServer) -> Any:
    """One FIM model, "coder", on a started mock engine."""
    return models_for({"coder": dirs["qwen2.5-coder"]}, urls=[mock.url])


STREAMS = {
    "mistral": (
        "/v1/fim/completions",
        {"model": "coder", "prompt": "a", "suffix": "b", "max_tokens": 200, "stream": True},
    ),
    "ollama": (
        "/api/generate",
        {"model": "coder", "prompt": "a", "suffix": "b", "options": {"num_predict": 200}},
    ),
    "ollama-chat": (
        "/api/chat",
        {
            "model": "coder",
            "options": {"num_predict": 200},
            "messages": [{"role": "user", "content": "a"}],
        },
    ),
    "tgi": ("/generate_stream", {"inputs": "a", "parameters": {"max_new_tokens": 200}}),
    "llama.cpp": (
        "/infill",
        {"input_prefix": "a", "input_suffix": "b", "n_predict": 200, "stream": True},
    ),
}


@pytest.mark.parametrize("dialect", list(STREAMS))
async def test_dropped_stream_aborts_the_engine_request(
    dialect: str, tokenizer_dirs: dict[str, Path]
) -> None:
    mock = MockServer(MockConfig(itl_ms=50))
    path, body = STREAMS[dialect]
    async with (
        mock,
        running_gateway(coder(tokenizer_dirs, mock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        async with http.stream("POST", path, json=body) as resp:
            assert resp.status_code == 200
            got = 0
            async for line in resp.aiter_lines():
                got += bool(line)
                if got == 3:
                    break
        # Leaving the block closed the connection after three of 200 tokens (10 s of stream).
        await until(lambda: mock.stats.aborted == 1, 2.0, "the engine saw the abort")
        assert mock.stats.completed == 0 and mock.stats.output_tokens < 20
        await until(lambda: mock.stats.running == 0, 2.0, "the engine stopped")
        text = (await http.get("/metrics")).text
    name = dialect.split("-")[0]
    assert (
        metric(
            text, f'codeserve_dialect_requests_total{{dialect="{name}",model="coder",status="499"}}'
        )
        == 1
    )
    assert metric(text, 'codeserve_requests_in_flight{model="coder"}') == 0


async def test_backpressure_refuses_in_each_dialects_shape(tokenizer_dirs: dict[str, Path]) -> None:
    mock = MockServer(MockConfig(ttft_ms=3000))
    async with (
        mock,
        running_gateway(coder(tokenizer_dirs, mock), max_in_flight=1, max_queue=0) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        busy = asyncio.create_task(
            http.post("/v1/completions", json={"model": "coder", "prompt": "x"})
        )
        await until(lambda: mock.stats.running == 1, 2.0, "one request in flight")
        ollama_resp = await http.post("/api/generate", json={"model": "coder", "prompt": "a"})
        tgi_resp = await http.post("/generate", json={"inputs": "a"})
        mistral_resp = await http.post(
            "/v1/fim/completions", json={"model": "coder", "prompt": "a"}
        )
        busy.cancel()
    assert ollama_resp.status_code == 429 and "overloaded" in ollama_resp.json()["error"]
    assert tgi_resp.status_code == 429 and tgi_resp.json()["error_type"] == "overloaded"
    assert mistral_resp.status_code == 429
    assert mistral_resp.json()["error"]["type"] == "rate_limit_error"
    assert ollama_resp.headers["retry-after"] == "1"


async def test_long_unary_answers_are_kept_warm(tokenizer_dirs: dict[str, Path]) -> None:
    """An answer not ready after keepalive_s is sent as 200 + whitespace + the body; every
    dialect's client still parses it."""
    mock = MockServer(MockConfig(ttft_ms=700, completion_text="done now"))
    async with mock, running_gateway(coder(tokenizer_dirs, mock), keepalive_s=0.2) as url:
        answer = await asyncio.to_thread(
            ollama.Client(host=url).generate, model="coder", prompt="a", suffix="b"
        )
        assert answer.response == "done now" and answer.done
        text = await asyncio.to_thread(InferenceClient(base_url=url).text_generation, "a")
        assert text == "done now"
        result = await asyncio.to_thread(
            mistral(url).fim.complete, model="coder", prompt="a", suffix="b"
        )
        assert result.choices[0].message.content == "done now"
        async with httpx.AsyncClient(base_url=url) as http:
            raw = await http.post(
                "/api/generate", json={"model": "coder", "prompt": "a", "stream": False}
            )
        assert raw.content.startswith(b" ") and json.loads(raw.content)["done"] is True
