"""Shared by the FIM and /infill tests: demo tokenizers per family, the expected prompts built
straight from `tokenizers` (independently of codeserve.server.fim), and a recording fake engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from tokenizers import Tokenizer

from codeserve.server.config import ModelsFile
from codeserve.server.demo_models import build_demo_tokenizer
from tests.server.gateway_harness import running_gateway

DEAD_ENGINE = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Layout:
    """How a family's FIM prompt looks, written out by hand for the tests."""

    template: str
    prefix: str
    suffix: str
    middle: str | None
    bos: str | None = None
    suffix_first: bool = False
    stop: str = "<|endoftext|>"
    model_type: str | None = None


_SC = ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")
_QWEN = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
LAYOUTS: dict[str, Layout] = {
    "qwen2.5-coder": Layout("qwen2.5-coder", *_QWEN),
    "starcoder2": Layout("starcoder2", *_SC, stop="<file_sep>"),
    "starcoder": Layout("starcoder", *_SC),
    "santacoder": Layout("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    "granite-code": Layout("granite", *_SC, model_type="granite"),
    "stable-code": Layout("stable-code", *_SC, model_type="stablelm"),
    "deepseek-coder": Layout(
        "deepseek-coder",
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        bos="<｜begin▁of▁sentence｜>",
        stop="<｜end▁of▁sentence｜>",
    ),
    "codellama": Layout("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", bos="<s>", stop="▁<EOT>"),
    "codestral": Layout(
        "codestral", "[PREFIX]", "[SUFFIX]", None, bos="<s>", suffix_first=True, stop="</s>"
    ),
    "codegemma": Layout("codegemma", *_QWEN, bos="<bos>", stop="<|file_separator|>"),
}
NO_FIM = ("phi-1", "polycoder")


def build_tokenizer_dirs(root: Path, families: list[str]) -> dict[str, Path]:
    """Small demo tokenizers (seconds for all), with config.json where detection reads it."""
    dirs = {}
    for name in families:
        path = root / name
        build_demo_tokenizer(path, name, corpus_bytes=60_000, vocab_size=800)
        layout = LAYOUTS.get(name)
        if layout and layout.model_type:
            (path / "config.json").write_text(json.dumps({"model_type": layout.model_type}))
        dirs[name] = path
    return dirs


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tokenizer_dirs(tmp_path_factory.mktemp("fim-tokenizers"), [*LAYOUTS, *NO_FIM])


def models_for(dirs: dict[str, Path], urls: list[str] | None = None, **spec: Any) -> ModelsFile:
    return ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": name,
                    "model": str(path),
                    "engine": {
                        "kind": "upstream",
                        "urls": urls or [DEAD_ENGINE],
                        "served_model_name": "fake",
                    },
                    **spec,
                }
                for name, path in dirs.items()
            ]
        }
    )


class Plain:
    """A family's tokenizer used directly: text as text, and ids of token spellings."""

    def __init__(self, path: Path) -> None:
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        data = json.loads(self.tok.to_str())
        data["added_tokens"] = []  # nothing is parsed as a token: every character is text
        self.text_only = Tokenizer.from_str(json.dumps(data))
        # SentencePiece-style vocabularies start every encoding with an implicit "▁".
        self.implicit_space = (
            self.text_only.encode("x", add_special_tokens=False).tokens[0].startswith("▁")
        )

    def id(self, spelling: str) -> int:
        token = self.tok.token_to_id(spelling)
        assert token is not None, spelling
        return token

    def text(self, s: str, leading_space: bool = True) -> list[int]:
        if not s:
            return []
        if leading_space or not self.implicit_space:
            return self.text_only.encode(s, add_special_tokens=False).ids
        # Meta's codellama trick: an anchor character (never merged) takes the implicit space.
        anchored = self.text_only.encode("☺" + s, add_special_tokens=False).ids
        anchor = self.text_only.encode("☺", add_special_tokens=False).ids
        return anchored[len(anchor) :]


def expected_fim(plain: Plain, layout: Layout, prefix: str, suffix: str) -> list[int]:
    lead = [plain.id(layout.bos)] if layout.bos else []
    pre = plain.text(prefix)
    suf = plain.text(suffix, leading_space=False)
    if layout.suffix_first:
        ids = [*lead, plain.id(layout.suffix), *suf, plain.id(layout.prefix), *pre]
    else:
        ids = [*lead, plain.id(layout.prefix), *pre, plain.id(layout.suffix), *suf]
    return ids + ([plain.id(layout.middle)] if layout.middle else [])


@dataclass
class RecordingEngine:
    """An OpenAI-compatible engine on 127.0.0.1 that records bodies and answers `text`."""

    text: str = "    total = a + b"
    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    async def _health(_: web.Request) -> web.Response:
        return web.json_response({})

    @staticmethod
    async def _models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake", "max_model_len": 4096}]})

    def _choice(self, index: int, body: dict[str, Any], text: str, done: bool) -> dict[str, Any]:
        stops = body.get("stop_token_ids") or [None]
        return {
            "index": index,
            "text": text,
            "logprobs": None,
            "finish_reason": "stop" if done else None,
            "stop_reason": stops[0] if done else None,
        }

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        n = int(body.get("n", 1))
        usage = {
            "prompt_tokens": len(body["prompt"]) if isinstance(body["prompt"], list) else 1,
            "completion_tokens": 3 * n,
            "total_tokens": 0,
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "cmpl-1",
                    "object": "text_completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [self._choice(i, body, self.text, True) for i in range(n)],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        half = len(self.text) // 2
        async for chunk in self._chunks(body, n, half, usage):
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _chunks(
        self, body: dict[str, Any], n: int, half: int, usage: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        base = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "fake"}
        for part, done in ((self.text[:half], False), (self.text[half:], True)):
            for i in range(n):
                yield {**base, "choices": [self._choice(i, body, part, done)]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**base, "choices": [], "usage": usage}


@asynccontextmanager
async def recording_engine(text: str) -> AsyncIterator[RecordingEngine]:
    engine = RecordingEngine(text=text)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@asynccontextmanager
async def gateway_client(
    dirs: dict[str, Path], engine: RecordingEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway serving `dirs` (name -> tokenizer dir) from `engine`, and a client for it."""
    async with (
        running_gateway(models_for(dirs, urls=[engine.url])) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client
