"""`suffix` on /v1/completions through the gateway, with a recording engine at the engine seam:
what the engine receives (token ids, stop_token_ids, n, stream, logprobs), and pass-through of
already-rendered prompts (Continue)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from codeserve.common.sse import data_of
from tests.server.fim_support import (
    LAYOUTS,
    Plain,
    RecordingEngine,
    expected_fim,
    gateway_client,
    recording_engine,
    tokenizer_dirs,
)

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n    return total\n"


@pytest.fixture
async def engine() -> AsyncIterator[RecordingEngine]:
    async with recording_engine(RecordingEngine().text) as fake:
        yield fake


@pytest.fixture
async def http(
    engine: RecordingEngine, tokenizer_dirs: dict[str, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    dirs = {name: tokenizer_dirs[name] for name in ("qwen2.5-coder", "codellama", "phi-1")}
    async with gateway_client(dirs, engine) as client:
        yield client


async def test_engine_gets_rendered_ids_and_stop_tokens(
    http: httpx.AsyncClient, engine: RecordingEngine, tokenizer_dirs: dict[str, Path]
) -> None:
    plain = Plain(tokenizer_dirs["codellama"])
    resp = await http.post(
        "/v1/completions",
        json={
            "model": "codellama",
            "prompt": PREFIX,
            "suffix": SUFFIX,
            "n": 2,
            "max_tokens": 8,
            "logprobs": 2,
            "stop_token_ids": [7],
            "temperature": 0.5,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [c["text"] for c in body["choices"]] == [engine.text] * 2
    assert body["model"] == "codellama"
    (sent,) = engine.bodies
    assert sent["prompt"] == expected_fim(plain, LAYOUTS["codellama"], PREFIX, SUFFIX)
    assert "suffix" not in sent and "extra_files" not in sent
    assert sent["stop_token_ids"][0] == 7  # the client's own stop ids come first
    assert plain.id("▁<EOT>") in sent["stop_token_ids"]
    assert (sent["n"], sent["logprobs"], sent["max_tokens"]) == (2, 2, 8)


async def test_streamed_fim_relays_only_the_middle(
    http: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    body = {
        "model": "qwen2.5-coder",
        "prompt": [PREFIX, "x = "],
        "suffix": SUFFIX,
        "n": 2,
        "max_tokens": 4,
        "stream": True,
    }
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        assert resp.status_code == 200
        lines = [data.decode() for data in data_of(await resp.aread())]
    assert lines[-1] == "[DONE]"
    assert all(isinstance(p, list) for p in engine.bodies[0]["prompt"])  # both prefixes rendered
    texts: dict[int, str] = {}
    for line in lines[:-1]:
        for choice in json.loads(line)["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: engine.text, 1: engine.text}


async def test_already_rendered_prompt_passes_through(
    http: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    """Continue renders the FIM prompt itself and sends no `suffix`: forwarded untouched."""
    rendered = "<|fim_prefix|>def f():\n    <|fim_suffix|>\n<|fim_middle|>"
    stops = [
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_sep|>",
        "\n\n",
        "```",
        "<|im_end|>",
        "<|fim_pad|>",
    ]
    resp = await http.post(
        "/v1/completions",
        json={
            "model": "qwen2.5-coder",
            "prompt": rendered,
            "max_tokens": 16,
            "temperature": 0.01,
            "stop": stops,
            "stream": False,
        },
    )
    assert resp.status_code == 200, resp.text
    (sent,) = engine.bodies
    assert sent["prompt"] == rendered
    assert "stop_token_ids" not in sent


async def test_model_without_fim_refuses_before_the_engine(
    http: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    resp = await http.post("/v1/completions", json={"model": "phi-1", "prompt": "a", "suffix": "b"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "suffix"
    assert engine.bodies == []
