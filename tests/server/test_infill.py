"""llama.cpp's POST /infill with llama.vscode's request bodies (shared/reference.md §2), a
recording engine at the engine seam."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeserve.common.sse import data_of
from tests.server import fim_support
from tests.server.fim_support import (
    RecordingEngine,
    gateway_client,
    models_for,
    recording_engine,
)
from tests.server.gateway_harness import running_gateway

tokenizer_dirs = fim_support.tokenizer_dirs  # the session fixture of demo tokenizers

CHUNKS = [
    {"filename": "src/util.py", "text": "def helper(x):\n    return x * 2\n"},
    {"filename": "src/main.py", "text": "from util import helper\n"},
]


def vscode_body(**changes: Any) -> dict[str, Any]:
    """What llama.vscode's createRequestPayload sends for a completion (no `model`)."""
    body = {
        "input_prefix": "import os\n\ndef total(items):\n",
        "input_suffix": "\n    return result\n",
        "input_extra": CHUNKS,
        "prompt": "    result = ",
        "n_predict": 24,
        "top_k": 40,
        "top_p": 0.99,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1000,
        "n_indent": 4,
    }
    return {**body, **changes}


@pytest.fixture
async def engine() -> AsyncIterator[RecordingEngine]:
    async with recording_engine("sum(items)\n") as fake:
        yield fake


@pytest.fixture
async def http(
    engine: RecordingEngine, tokenizer_dirs: dict[str, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    # phi-1 first: without `model`, /infill must pick the first model that can do FIM.
    dirs = {name: tokenizer_dirs[name] for name in ("phi-1", "qwen2.5-coder", "starcoder")}
    async with gateway_client(dirs, engine) as client:
        yield client


async def rendered(http: httpx.AsyncClient, model: str, body: dict[str, Any]) -> list[int]:
    """The same request through /v1/completions/render (the OpenAI spelling of it)."""
    resp = await http.post(
        "/v1/completions/render",
        json={
            "model": model,
            "prompt": body["input_prefix"] + body["prompt"],
            "suffix": body["input_suffix"],
            "extra_files": body["input_extra"],
            "max_tokens": body["n_predict"],
        },
    )
    assert resp.status_code == 200, resp.text
    ids: list[int] = resp.json()["prompts"][0]["token_ids"]
    return ids


async def test_llama_vscode_request(http: httpx.AsyncClient, engine: RecordingEngine) -> None:
    body = vscode_body()
    resp = await http.post("/infill", json=body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["content"] == "sum(items)\n"
    assert answer["stop"] is True and answer["stop_type"] == "eos"
    assert answer["model"] == "qwen2.5-coder"
    assert answer["has_new_line"] is True and answer["truncated"] is False
    (sent,) = engine.bodies
    assert sent["prompt"] == await rendered(http, "qwen2.5-coder", body)
    assert answer["tokens_evaluated"] == len(sent["prompt"])
    assert answer["timings"]["predicted_n"] == answer["tokens_predicted"] == 3
    assert (sent["max_tokens"], sent["top_k"], sent["top_p"]) == (24, 40, 0.99)
    assert sent["stop_token_ids"]
    for ignored in ("samplers", "cache_prompt", "t_max_prompt_ms", "n_indent", "input_extra"):
        assert ignored not in sent


async def test_warm_up_answers_without_the_engine(
    http: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    body = {
        "input_prefix": "",
        "input_suffix": "",
        "input_extra": CHUNKS,
        "prompt": "",
        "n_predict": 0,
        "samplers": [],
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1,
    }
    resp = await http.post("/infill", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] == "" and resp.json()["tokens_predicted"] == 0
    assert engine.bodies == []


async def test_streaming_answer_in_llama_cpp_events(
    http: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    async with http.stream(
        "POST", "/infill", json=vscode_body(stream=True, model="starcoder")
    ) as resp:
        assert resp.status_code == 200
        events = [json.loads(data) for data in data_of(await resp.aread())]
    *pieces, last = events
    assert "".join(e["content"] for e in pieces) == engine.text
    assert all(e["stop"] is False for e in pieces)
    assert last["stop"] is True and last["content"] == ""
    assert last["tokens_predicted"] == 3 and last["model"] == "starcoder"
    assert last["timings"]["prompt_ms"] is not None


async def test_errors(http: httpx.AsyncClient) -> None:
    resp = await http.post("/infill", json=vscode_body(model="phi-1"))
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "suffix"
    resp = await http.post("/infill", json=vscode_body(model="nope"))
    assert resp.status_code == 404
    resp = await http.post("/infill", json=vscode_body(n_predict=-5))
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n_predict"


async def test_overlong_context_is_cut_down_not_refused(
    engine: RecordingEngine, tokenizer_dirs: dict[str, Path]
) -> None:
    models = models_for(
        {"q": tokenizer_dirs["qwen2.5-coder"]}, urls=[engine.url], max_model_len=160
    )
    body = vscode_body(input_prefix="x = 1\n" * 200, n_predict=16)
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/infill", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["truncated"] is True
    assert len(engine.bodies[0]["prompt"]) <= 160 - 16
