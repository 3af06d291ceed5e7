"""llama.cpp's `POST /infill`, for IDE plugins that speak it (llama.vscode, llama.vim).

The body is turned into a FIM completion (prefix = `input_prefix` + `prompt`, suffix =
`input_suffix`, repo context = `input_extra`) rendered to token ids here, then served by the
ordinary completions path (limits, backpressure, metrics, stops, disconnects); the OpenAI answer
is reshaped into llama.cpp's. Unlike /v1/completions, a prompt longer than the context is cut
down as llama.cpp does (oldest files first, then the far ends of prefix and suffix) instead of
being refused: an IDE cannot react to a 400 mid-keystroke.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from codeserve.server.engines.health import ModelEntry
from codeserve.server.errors import InvalidRequestError
from codeserve.server.fim import prompt_budget
from codeserve.server.fim_prompter import FimPrompter
from codeserve.server.protocol import (
    CompletionRequest,
    InfillChunk,
    InfillRequest,
    InfillResponse,
    InfillTimings,
)
from codeserve.server.registry import ModelRegistry
from codeserve.server.serving import (
    COMPLETIONS,
    SSE_HEADERS,
    CompletionService,
    parse_request,
    read_body,
    validation_error,
)


async def pick_model(registry: ModelRegistry, name: str | None) -> tuple[ModelEntry, FimPrompter]:
    """The named model, or (llama.cpp serves one model) the first one that can do FIM."""
    if name is not None:
        entry = registry.get(name)
        if entry.renderer is None:
            raise InvalidRequestError(f"model {name!r} cannot fill in the middle", param="model")
        await entry.renderer.wait()
        return entry, entry.renderer.require_prompter()
    for entry in registry.entries.values():
        if entry.renderer is not None:
            await entry.renderer.wait()
            if entry.renderer.prompter is not None:
                return entry, entry.renderer.prompter
    raise InvalidRequestError("no model of this gateway supports fill-in-the-middle",
                              param="model")


def completion_body(infill: InfillRequest, entry: ModelEntry, prompter: FimPrompter
                    ) -> tuple[CompletionRequest, bool]:
    """The completions request for an /infill body, and whether the prompt was cut down."""
    max_tokens = infill.n_predict if infill.n_predict > 0 else None
    rendering = prompter.render(infill.input_prefix + infill.prompt, infill.input_suffix,
                                infill.input_extra,
                                budget=prompt_budget(entry.max_model_len, max_tokens),
                                overflow="truncate")
    fields: dict[str, Any] = {
        "model": entry.name, "prompt": rendering.token_ids, "max_tokens": max_tokens,
        "temperature": infill.temperature, "min_p": infill.min_p, "stop": infill.stop,
        # llama.cpp spells "disabled" as top_k 0, top_p 1 and seed -1.
        "top_k": infill.top_k if infill.top_k and infill.top_k > 0 else None,
        "top_p": infill.top_p if infill.top_p else None,
        "seed": infill.seed if infill.seed is not None and infill.seed >= 0 else None,
        "stop_token_ids": prompter.stop_ids, "stream": infill.stream,
        "stream_options": {"include_usage": True} if infill.stream else None,
    }
    try:
        req = CompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise validation_error(exc) from None
    return req, rendering.truncated


def _stop_type(choice: dict[str, Any]) -> tuple[str, str]:
    reason = choice.get("finish_reason")
    if reason == "length":
        return "limit", ""
    if reason == "stop":
        word = choice.get("stop_reason")
        return ("word", word) if isinstance(word, str) else ("eos", "")
    return "none", ""


def _final(model: str, content: str, choice: dict[str, Any], usage: dict[str, Any],
           truncated: bool, timings: tuple[float, float] | None = None) -> InfillResponse:
    stop_type, word = _stop_type(choice)
    prompt_n = int(usage.get("prompt_tokens") or 0)
    predicted_n = int(usage.get("completion_tokens") or 0)
    return InfillResponse(
        content=content, model=model, tokens_predicted=predicted_n, tokens_evaluated=prompt_n,
        truncated=truncated, has_new_line="\n" in content, stop_type=stop_type,  # type: ignore[arg-type]
        stopping_word=word,
        timings=InfillTimings(prompt_n=prompt_n, predicted_n=predicted_n,
                              prompt_ms=timings[0] if timings else None,
                              predicted_ms=timings[1] if timings else None),
    )


def warm_up_answer(model: str) -> InfillResponse:
    """`n_predict: 0` is llama.vscode's cache warm-up: nothing to generate, answered at once."""
    return InfillResponse(content="", model=model, tokens_predicted=0, tokens_evaluated=0,
                          truncated=False, has_new_line=False, stop_type="limit",
                          timings=InfillTimings(prompt_n=0, predicted_n=0))


def _event(model: InfillChunk | dict[str, Any]) -> bytes:
    data = model.model_dump() if isinstance(model, InfillChunk) else model
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def _llama_stream(events: AsyncIterator[bytes], model: str, truncated: bool,
                        started: float) -> AsyncIterator[bytes]:
    """OpenAI completion chunks in, llama.cpp /infill events out (no [DONE], like llama.cpp)."""
    pending = b""
    choice: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    first: float | None = None
    try:
        async for piece in events:
            *complete, pending = (pending + piece).split(b"\n\n")
            for event in complete:
                if not event.startswith(b"data: {"):
                    continue  # [DONE]: the closing event below replaces it
                data = orjson.loads(event[6:])
                if "error" in data:
                    yield _event(data)
                    continue
                usage = data.get("usage") or usage
                for item in data.get("choices") or []:
                    choice = item
                    if item.get("text"):
                        first = first or time.perf_counter()
                        yield _event(InfillChunk(content=item["text"]))
        now = time.perf_counter()
        timings = ((first or now) - started) * 1000, (now - (first or now)) * 1000
        yield _event(_final(model, "", choice, usage, truncated, timings))
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()


async def handle_infill(service: CompletionService, request: Request) -> Response:
    body = await read_body(request, service.settings.max_body_bytes)
    infill: InfillRequest = parse_request(body, InfillRequest)
    entry, prompter = await pick_model(service.registry, infill.model)
    if infill.n_predict == 0:
        return Response(warm_up_answer(entry.name).model_dump_json(),
                        media_type="application/json")
    req, truncated = completion_body(infill, entry, prompter)
    started = time.perf_counter()
    response = await service.serve(request, COMPLETIONS, req)
    if isinstance(response, StreamingResponse):
        return StreamingResponse(
            _llama_stream(response.body_iterator, entry.name, truncated, started),  # type: ignore[arg-type]
            media_type="text/event-stream", headers=SSE_HEADERS)
    data = orjson.loads(bytes(response.body))
    choice = (data.get("choices") or [{}])[0]
    answer = _final(entry.name, choice.get("text") or "", choice, data.get("usage") or {},
                    truncated)
    return Response(answer.model_dump_json(), media_type="application/json")
