"""Mistral's (Codestral's) fill-in-the-middle API: `POST /v1/fim/completions`.

Editor plugins use this shape for "OpenAI-compatible" and vLLM providers that can do FIM
(Continue's `fim/completions`). The body is `{model, prompt, suffix, max_tokens, min_tokens,
temperature, top_p, stop, random_seed, stream}`; with `suffix` the gateway renders the model's
FIM prompt (prefix = `prompt`), without it `prompt` is completed as it is. The answer is
chat-completion shaped, as Mistral's: `choices[].message.content` (streamed: `delta.content`)
is the middle. Errors are the OpenAI error object, like the gateway's other /v1 routes.

Beyond Mistral's fields the gateway also takes `n` (candidates per request, as on
/v1/completions), `top_k` and `seed` (a synonym of `random_seed`). Ignored on purpose:
`metadata`, `prompt_cache_key` (the engine caches prefixes by itself). A prompt longer than the
context is cut down (oldest text first) rather than refused, as for /infill.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from codeserve.server.dialects.common import (
    Context,
    Dialect,
    Served,
    StreamState,
    chunk_pieces,
    completion_request,
    fim_prompt,
    fim_prompter,
    usage_stream_options,
)
from codeserve.server.protocol import NonEmptyStr
from codeserve.server.serving import CompletionService

_CONFIG = ConfigDict(extra="ignore", protected_namespaces=(), strict=True)


class FimCompletionRequest(BaseModel):
    """The body Mistral's client sends to /v1/fim/completions (plus `n`, `top_k`, `seed`)."""

    model_config = _CONFIG

    model: NonEmptyStr
    prompt: str
    suffix: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    stop: NonEmptyStr | Annotated[list[NonEmptyStr], Field(max_length=64)] | None = None
    random_seed: int | None = Field(None, ge=0, le=2**63 - 1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1)
    stream: bool = False


class Mistral(Dialect):
    name = "mistral"


DIALECT = Mistral()


def _finish(reason: str | None) -> str:
    # Mistral's non-streamed choices always carry a finish reason.
    return reason if reason in ("stop", "length") else "stop"


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def fim_completions(request: Request) -> Response:
    return await DIALECT.handle(request, _serve)


async def _serve(service: CompletionService, ctx: Context) -> Response:
    body: FimCompletionRequest = await ctx.body(service, FimCompletionRequest)
    entry = service.registry.get(body.model)
    ctx.model = entry.name
    prompt: str | list[int] = body.prompt
    if body.suffix is not None:
        prompter = await fim_prompter(entry)
        prompt, _ = fim_prompt(entry, prompter, body.prompt, body.suffix, body.max_tokens)
        stop_ids: list[int] | None = prompter.stop_ids
    else:
        stop_ids = None
    req = completion_request(
        {
            "model": entry.name,
            "prompt": prompt,
            "max_tokens": body.max_tokens,
            "min_tokens": body.min_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "top_k": body.top_k,
            "stop": body.stop,
            "n": body.n,
            "seed": body.random_seed if body.random_seed is not None else body.seed,
            "stop_token_ids": stop_ids,
            "stream": body.stream,
            "stream_options": usage_stream_options(body.stream),
        }
    )
    ident = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        return await ctx.unary(
            service, req, lambda served: _whole(ident, created, entry.name, served)
        )

    async def reshape(
        chunks: AsyncIterator[dict[str, Any]], state: StreamState
    ) -> AsyncIterator[bytes]:
        started: set[int] = set()
        async for chunk in chunks:
            base = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": entry.name,
            }
            choices = []
            for index, text, finish, _ in chunk_pieces(chunk):
                delta: dict[str, Any] = {"content": text}
                if index not in started:
                    started.add(index)
                    delta = {"role": "assistant", **delta}
                choices.append({"index": index, "delta": delta, "finish_reason": finish})
            out: dict[str, Any] = {**base, "choices": choices}
            if chunk.get("usage"):
                out["usage"] = _usage(chunk["usage"])
            if choices or "usage" in out:
                yield b"data: " + orjson.dumps(out) + b"\n\n"
        if state.error is None:
            yield b"data: [DONE]\n\n"

    return await ctx.stream(service, req, reshape)


def _whole(ident: str, created: int, model: str, served: Served) -> bytes:
    return orjson.dumps(
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "tool_calls": None,
                        "prefix": False,
                    },
                    "finish_reason": _finish(served.finish.get(i)),
                }
                for i, text in sorted(served.texts.items())
            ],
            "usage": _usage(served.usage),
        }
    )
