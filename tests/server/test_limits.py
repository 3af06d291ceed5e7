"""Request limits: clear 4xx error objects before anything reaches the engine, and only
validated fields ever reach it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from tokenizers import Tokenizer

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_encoding import Kind
from codeserve.loadtest.mock_server import MockServer, MockUpstream
from codeserve.server.config import ModelsFile
from codeserve.server.demo_models import build_demo_tokenizer
from tests.server.gateway_harness import running_gateway


class RecordingUpstream(MockUpstream):
    """The mock engine, keeping every request body it received."""

    def __init__(self, config: MockConfig) -> None:
        super().__init__(config)
        self.bodies: list[dict[str, Any]] = []

    async def _generate(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        self.bodies.append(orjson.loads(await request.read()))
        return await super()._generate(request, kind)


@pytest.fixture
async def engine() -> AsyncIterator[MockServer]:
    server = MockServer()
    server.upstream = RecordingUpstream(MockConfig())
    await server.start()
    yield server
    await server.stop()


def models(url: str, model: str = "org/coder") -> ModelsFile:
    return ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": "coder",
                    "model": model,
                    "max_model_len": 512,
                    "engine": {"kind": "upstream", "urls": [url]},
                }
            ]
        }
    )


def error(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}
LIMIT_CASES = [
    ({"n": 129}, error("n x prompts = 129 exceeds the limit of 128 candidates per request", "n")),
    (
        {"n": 64, "prompt": ["a", "b", "c"]},
        error("n x prompts = 192 exceeds the limit of 128 candidates per request", "n"),
    ),
    (
        {"best_of": 200},
        error("best_of x prompts = 200 exceeds the limit of 128 candidates per request", "best_of"),
    ),
    ({"max_tokens": 40000}, error("max_tokens = 40000 exceeds the limit of 32768", "max_tokens")),
    (
        {"max_tokens": 512},
        error(
            "max_tokens = 512 leaves no room for the prompt in this model's context of 512 tokens",
            "max_tokens",
        ),
    ),
    (
        {"prompt": list(range(500)), "max_tokens": 20},
        error(
            "prompt of 500 tokens + max_tokens 20 exceeds this model's context of 512 tokens",
            "prompt",
        ),
    ),
    (
        {"prompt": [[1, 2], list(range(510))]},
        error(
            "prompt of 510 tokens + max_tokens 16 exceeds this model's context of 512 tokens",
            "prompt",
        ),
    ),
    (
        {"stop": [f"s{i}" for i in range(17)]},
        error("17 stop sequences given; at most 16 are allowed", "stop"),
    ),
    ({"stop": "x" * 257}, error("stop sequences are limited to 256 characters", "stop")),
    ({"logprobs": 21}, error("logprobs = 21 exceeds the limit of 20", "logprobs")),
    (
        {"min_tokens": 30, "max_tokens": 10},
        error("min_tokens = 30 exceeds max_tokens = 10", "min_tokens"),
    ),
]


@pytest.mark.parametrize(("fields", "expected"), LIMIT_CASES)
async def test_limits_give_clear_errors(
    engine: MockServer, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    async with running_gateway(models(engine.url)) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/v1/completions", json={"model": "coder", "prompt": "x", **fields})
    assert resp.status_code == 400, resp.text
    assert resp.json() == expected
    assert engine.stats.received == 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [""]}, "prompt"),
        ({"prompt": [[]]}, "prompt"),
        ({"prompt": [-1]}, "prompt"),
        ({"prompt": [2**40]}, "prompt"),
        ({"seed": 2**64}, "seed"),
        ({"logit_bias": {"1": 1e9}}, "logit_bias"),
        ({"stop_token_ids": [2**63]}, "stop_token_ids"),
        ({"top_k": 2**70}, "top_k"),
        ({"user": "u" * 257}, "user"),
    ],
)
async def test_malformed_fields_are_400_naming_the_field(
    engine: MockServer, fields: dict[str, Any], param: str
) -> None:
    async with running_gateway(models(engine.url)) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/v1/completions", json={"model": "coder", "prompt": "x", **fields})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"].startswith(param), err
    assert engine.stats.received == 0


async def test_chat_limits_and_unforwardable_content(engine: MockServer) -> None:
    async with running_gateway(models(engine.url)) as url, httpx.AsyncClient(base_url=url) as http:
        empty = await http.post("/v1/chat/completions", json={**CHAT, "messages": []})
        top = await http.post(
            "/v1/chat/completions", json={**CHAT, "logprobs": True, "top_logprobs": 21}
        )
        tokens = await http.post(
            "/v1/chat/completions", json={**CHAT, "max_completion_tokens": 40000}
        )
        # Free-form content parts pass validation but hold a number no engine can take.
        huge = await http.post(
            "/v1/chat/completions",
            content=orjson.dumps(CHAT).replace(
                b'"hi"', b'[{"type":"text","text":"hi","n":' + str(2**70).encode() + b"}]"
            ),
        )
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
    assert top.status_code == 400
    assert top.json() == error("logprobs = 21 exceeds the limit of 20", "top_logprobs")
    assert tokens.json() == error("max_tokens = 40000 exceeds the limit of 32768", "max_tokens")
    assert huge.status_code == 400, huge.text
    assert huge.json()["error"]["message"].startswith("request cannot be forwarded")
    assert engine.stats.received == 0


async def test_body_size_limit_with_and_without_content_length(engine: MockServer) -> None:
    big = orjson.dumps({"model": "coder", "prompt": "x" * 5000})

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with (
        running_gateway(models(engine.url), max_body_bytes=2000) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        declared = await http.post(
            "/v1/completions", content=big, headers={"content-type": "application/json"}
        )
        streamed = await http.post(
            "/v1/completions", content=chunked(), headers={"content-type": "application/json"}
        )
        small = await http.post("/v1/completions", json={"model": "coder", "prompt": "x"})
    assert "content-length" not in streamed.request.headers
    assert declared.status_code == 413 and streamed.status_code == 413
    assert declared.json() == {
        "error": {
            "message": f"request body of {len(big)} bytes exceeds 2000 bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "payload_too_large",
        }
    }
    assert streamed.json()["error"]["code"] == "payload_too_large"
    assert small.status_code == 200
    assert engine.stats.received == 1


async def test_unknown_fields_never_reach_the_engine(engine: MockServer) -> None:
    upstream = engine.upstream
    assert isinstance(upstream, RecordingUpstream)
    async with running_gateway(models(engine.url)) as url, httpx.AsyncClient(base_url=url) as http:
        completion = await http.post(
            "/v1/completions",
            json={
                "model": "coder",
                "prompt": "x",
                "max_tokens": 2,
                "temperature": 0.5,
                "guided_json": {"type": "object"},
                "extra_body": {"x": 1},
                "priority": -100,
                "stream": True,
                "stream_options": {"include_usage": False, "smuggled": 1},
            },
        )
        chat = await http.post(
            "/v1/chat/completions",
            json={
                **CHAT,
                "max_tokens": 2,
                "chat_template": "{{ evil }}",
                "tools": [{"x": 1}],
                "messages": [{"role": "user", "content": "hi", "smuggled": True}],
            },
        )
    assert completion.status_code == 200 and chat.status_code == 200
    sent_completion, sent_chat = upstream.bodies
    # Upstream engines know the model by its `model` name.
    assert sent_completion == {
        "model": "org/coder",
        "prompt": "x",
        "max_tokens": 2,
        "temperature": 0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert sent_chat == {
        "model": "org/coder",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "hi"}],
    }


async def test_text_prompt_over_the_context_is_400_with_the_numbers(
    engine: MockServer, tmp_path: Path
) -> None:
    """With the model's tokenizer at hand the gateway counts text prompts itself (as the
    engine would), so an overflow never reaches the engine."""
    build_demo_tokenizer(tmp_path, "qwen2.5-coder", corpus_bytes=60_000, vocab_size=800)
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)

    too_long = "def f():\n    return 1\n" * 60
    long_in_bytes_only = "return " * 300
    assert count(too_long) + 100 > 512 >= count(too_long) + 16
    assert len(long_in_bytes_only.encode()) > 512 >= count(long_in_bytes_only) + 16
    async with (
        running_gateway(models(engine.url, str(tmp_path))) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        for _ in range(100):  # the tokenizer loads in the background
            card = (await http.get("/v1/models")).json()["data"][0]
            if card["fim_template"]:
                break
            await asyncio.sleep(0.05)
        over = await http.post(
            "/v1/completions", json={"model": "coder", "prompt": too_long, "max_tokens": 100}
        )
        batch = await http.post(
            "/v1/completions",
            json={"model": "coder", "prompt": ["short", too_long], "max_tokens": 100},
        )
        fits = [
            await http.post("/v1/completions", json={"model": "coder", "prompt": p})
            for p in (too_long, long_in_bytes_only)
        ]
    expected = error(
        f"prompt of {count(too_long)} tokens + max_tokens 100 exceeds this "
        "model's context of 512 tokens",
        "prompt",
    )
    assert over.status_code == 400 and over.json() == expected
    assert batch.status_code == 400 and batch.json() == expected
    assert [r.status_code for r in fits] == [200, 200]
    assert engine.stats.received == 2
