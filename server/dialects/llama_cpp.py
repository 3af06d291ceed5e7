"""llama.cpp's `POST /infill`, for IDE plugins that speak it (llama.vscode, llama.vim).

The body is turned into a FIM completion (prefix = `input_prefix` + `prompt`, suffix =
`input_suffix`, repo context = `input_extra`) rendered to token ids here, then served by the
ordinary completions path (limits, backpressure, metrics, stops, disconnects); the OpenAI answer
is reshaped into llama.cpp's. Unlike /v1/completions, a prompt longer than the context is cut
down as llama.cpp does (oldest files first, then the far ends of prefix and suffix) instead of
being refused: an IDE cannot react to a 400 mid-keystroke. Errors are the OpenAI error object
(llama.cpp's own error object has the same `message` and `type`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
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
)
from codeserve.server.engines.health import ModelEntry
from codeserve.server.errors import InvalidRequestError
from codeserve.server.fim.prompter import FimPrompter
from codeserve.server.protocol import (
    CompletionRequest,
    InfillChunk,
    InfillRequest,
    InfillResponse,
    InfillTimings,
)
from codeserve.server.registry import ModelRegistry
from codeserve.server.serving import CompletionService


class LlamaCpp(Dialect):
    name = "llama.cpp"


DIALECT = LlamaCpp()


async def pick_model(registry: ModelRegistry, name: str | None) -> tuple[ModelEntry, FimPrompter]:
    """The named model, or (llama.cpp serves one model) the first one that can do FIM."""
    if name is not None:
        entry = registry.get(name)
        return entry, await fim_prompter(entry)
    for entry in registry.entries.values():
        if entry.renderer is not None:
            await entry.renderer.wait()
            if entry.renderer.prompter is not None:
                return entry, entry.renderer.prompter
    raise InvalidRequestError("no model of this gateway supports fill-in-the-middle", param="model")


def completion_body(
    infill: InfillRequest, entry: ModelEntry, prompter: FimPrompter
) -> tuple[CompletionRequest, bool]:
    """The completions request for an /infill body, and whether the prompt was cut down."""
    max_tokens = infill.n_predict if infill.n_predict > 0 else None
    ids, truncated = fim_prompt(
        entry,
        prompter,
        infill.input_prefix + infill.prompt,
        infill.input_suffix,
        max_tokens,
        infill.input_extra,
    )
    req = completion_request(
        {
            "model": entry.name,
            "prompt": ids,
            "max_tokens": max_tokens,
            "temperature": infill.temperature,
            "min_p": infill.min_p,
            "stop": infill.stop,
            # llama.cpp spells "disabled" as top_k 0, top_p 1 and seed -1.
            "top_k": infill.top_k if infill.top_k and infill.top_k > 0 else None,
            "top_p": infill.top_p if infill.top_p else None,
            "seed": infill.seed if infill.seed is not None and infill.seed >= 0 else None,
            "stop_token_ids": prompter.stop_ids,
            "stream": infill.stream,
            "stream_options": {"include_usage": True} if infill.stream else None,
        }
    )
    return req, truncated


def _stop_type(finish: str | None, stop_reason: Any) -> tuple[str, str]:
    if finish == "length":
        return "limit", ""
    if finish == "stop":
        return ("word", stop_reason) if isinstance(stop_reason, str) else ("eos", "")
    return "none", ""


def _final(
    model: str,
    content: str,
    finish: str | None,
    stop_reason: Any,
    usage: dict[str, Any],
    truncated: bool,
    timings: tuple[float, float] | None = None,
) -> InfillResponse:
    stop_type, word = _stop_type(finish, stop_reason)
    prompt_n = int(usage.get("prompt_tokens") or 0)
    predicted_n = int(usage.get("completion_tokens") or 0)
    return InfillResponse(
        content=content,
        model=model,
        tokens_predicted=predicted_n,
        tokens_evaluated=prompt_n,
        truncated=truncated,
        has_new_line="\n" in content,
        stop_type=stop_type,
        stopping_word=word,
        timings=InfillTimings(
            prompt_n=prompt_n,
            predicted_n=predicted_n,
            prompt_ms=timings[0] if timings else None,
            predicted_ms=timings[1] if timings else None,
        ),
    )


def warm_up_answer(model: str) -> InfillResponse:
    """`n_predict: 0` is llama.vscode's cache warm-up: nothing to generate, answered at once."""
    return InfillResponse(
        content="",
        model=model,
        tokens_predicted=0,
        tokens_evaluated=0,
        truncated=False,
        has_new_line=False,
        stop_type="limit",
        timings=InfillTimings(prompt_n=0, predicted_n=0),
    )


def _event(model: InfillChunk) -> bytes:
    return b"data: " + orjson.dumps(model.model_dump()) + b"\n\n"


async def handle_infill(request: Request) -> Response:
    return await DIALECT.handle(request, _serve)


async def _serve(service: CompletionService, ctx: Context) -> Response:
    infill: InfillRequest = await ctx.body(service, InfillRequest)
    entry, prompter = await pick_model(service.registry, infill.model)
    ctx.model = entry.name
    if infill.n_predict == 0:
        ctx.count("200")
        return Response(warm_up_answer(entry.name).model_dump_json(), media_type="application/json")
    req, truncated = completion_body(infill, entry, prompter)
    if not req.stream:

        def whole(served: Served) -> bytes:
            return (
                _final(
                    entry.name,
                    served.texts.get(0, ""),
                    served.finish.get(0),
                    served.stop_reason.get(0),
                    served.usage,
                    truncated,
                )
                .model_dump_json()
                .encode()
            )

        return await ctx.unary(service, req, whole)

    async def reshape(
        chunks: AsyncIterator[dict[str, Any]], state: StreamState
    ) -> AsyncIterator[bytes]:
        """OpenAI completion chunks in, llama.cpp /infill events out (no [DONE], like
        llama.cpp)."""
        usage: dict[str, Any] = {}
        finish: tuple[str | None, Any] = (None, None)
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            for _, text, reason, stop_reason in chunk_pieces(chunk):
                if reason:
                    finish = (reason, stop_reason)
                if text:
                    yield _event(InfillChunk(content=text))
        if state.error is None:
            end = time.perf_counter()
            first = state.first_token_at or end
            yield _event(
                _final(
                    entry.name,
                    "",
                    *finish,
                    usage,
                    truncated,
                    ((first - ctx.started) * 1000, (end - first) * 1000),
                )
            )

    return await ctx.stream(service, req, reshape)
