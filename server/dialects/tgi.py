"""Text Generation Inference's API, as llm-ls (llm-vscode, llm.nvim) and Hugging Face's
`InferenceClient.text_generation` speak it: `POST /generate`, `POST /generate_stream`, `POST /`
(TGI's compatibility route: `stream` picks one or the other; `InferenceClient(base_url=...)` posts
there) and `GET /info`.

TGI serves one model: these routes serve the gateway's first model, another one by a `model`
field in the body (an extension), or under `/models/{model}/...` (the same four routes, for
clients that cannot add a field). `inputs` is completed as it is: plugins send a FIM prompt they
rendered themselves, which reaches the engine untouched. `generated_text` excludes the prompt
unless `return_full_text`. Streams are TGI's server-sent events, one per piece of text, the
last with `generated_text` and `details`. Errors are TGI's `{"error", "error_type"}`: invalid
input is 422 `validation`, overload 429 `overloaded`, a failing engine `generation`.

Parameters: `max_new_tokens`, `temperature`, `top_p`, `top_k`, `stop`, `seed`, `do_sample`
(greedy unless set or a sampling parameter is given, as TGI decides), `repetition_penalty`,
`frequency_penalty`, `return_full_text`, `details` (finish reason, token count and seed; the
per-token lists stay empty and streamed tokens carry id 0 and logprob 0: the engine is not asked
for them). Ignored on purpose: `decoder_input_details`, `top_n_tokens`, `truncate`, `typical_p`,
`watermark`. Refused (422): `best_of` above 1, `grammar`, `adapter_id`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codeserve.server.dialects.common import (
    Context,
    Dialect,
    Served,
    StreamState,
    chunk_pieces,
    completion_request,
    usage_stream_options,
)
from codeserve.server.engines.health import ModelEntry
from codeserve.server.errors import APIError, InvalidRequestError
from codeserve.server.serving import CompletionService

TGI_VERSION = "3.3.0"  # the API level followed
_CONFIG = ConfigDict(extra="ignore", protected_namespaces=())


class Parameters(BaseModel):
    model_config = _CONFIG

    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, gt=0)
    stop: list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    do_sample: bool | None = None
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    return_full_text: bool | None = None
    details: bool | None = None
    best_of: int | None = Field(None, ge=1)
    grammar: dict[str, Any] | None = None
    adapter_id: str | None = None
    typical_p: float | None = None

    def refuse_unsupported(self) -> None:
        if self.best_of is not None and self.best_of > 1:
            raise InvalidRequestError(
                "`best_of` above 1 is not supported by this gateway", param="parameters.best_of"
            )
        if self.grammar is not None:
            raise InvalidRequestError(
                "`grammar` is not supported by this gateway", param="parameters.grammar"
            )
        if self.adapter_id:
            raise InvalidRequestError(
                "`adapter_id` is not supported by this gateway", param="parameters.adapter_id"
            )

    def temperature_for_engine(self) -> float:
        """TGI samples when asked to or when any sampling parameter is set; else greedy."""
        sampling = bool(self.do_sample) or (
            (self.temperature is not None and self.temperature != 1.0)
            or self.top_k is not None
            or self.top_p is not None
            or self.typical_p is not None
        )
        if not sampling:
            return 0.0
        return self.temperature if self.temperature is not None else 1.0


class GenerateRequest(BaseModel):
    model_config = _CONFIG

    inputs: str
    parameters: Parameters = Field(default_factory=Parameters)
    stream: bool = False
    model: str | None = Field(None, min_length=1)  # not TGI's: picks one of the gateway's models


class Tgi(Dialect):
    name = "tgi"

    def error_response(self, exc: APIError) -> Response:
        return JSONResponse(
            _error(exc.message, exc.status_code),
            status_code=422 if exc.status_code == 400 else exc.status_code,
            headers=exc.headers,
        )

    def stream_error(self, error: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(_error_from(error)) + b"\n\n"

    def unary_error(self, error: dict[str, Any]) -> bytes:
        return orjson.dumps(_error_from(error))


DIALECT = Tgi()


def _error(message: str, status: int) -> dict[str, str]:
    if status in (429, 503):
        kind = "overloaded"
    elif status < 500:
        kind = "validation"
    else:
        kind = "generation"
    return {"error": message, "error_type": kind}


def _error_from(error: dict[str, Any]) -> dict[str, str]:
    detail = error.get("error")
    message = str(detail.get("message") if isinstance(detail, dict) else detail)
    return {"error": message, "error_type": "generation"}


def _finish(finish: str | None, stop_reason: Any) -> str:
    if finish == "length":
        return "length"
    return "stop_sequence" if isinstance(stop_reason, str) else "eos_token"


def _pick(service: CompletionService, name: str | None) -> ModelEntry:
    if name is not None:
        return service.registry.get(name)
    for entry in service.registry.entries.values():
        return entry
    raise InvalidRequestError("this gateway serves no model", param="model")


# -- routes ---------------------------------------------------------------------------------


def _model_in_path(request: Request) -> str | None:
    """`/models/{model}/...` names the model; the bare paths serve the gateway's first one."""
    model = request.path_params.get("model")
    return model if isinstance(model, str) else None


async def generate(request: Request) -> Response:
    model = _model_in_path(request)
    return await DIALECT.handle(request, lambda s, c: _serve(s, c, model, False))


async def generate_stream(request: Request) -> Response:
    model = _model_in_path(request)
    return await DIALECT.handle(request, lambda s, c: _serve(s, c, model, True))


async def compat(request: Request) -> Response:
    """TGI's `POST /`: `stream` decides; a non-streamed answer is a list of one."""
    model = _model_in_path(request)
    return await DIALECT.handle(request, lambda s, c: _serve(s, c, model, None))


async def info(request: Request) -> Response:
    model = _model_in_path(request)

    async def serve(service: CompletionService, ctx: Context) -> Response:
        entry = _pick(service, model)
        ctx.model = entry.name
        settings = service.settings
        ctx.count("200")
        return JSONResponse(
            {
                "model_id": entry.name,
                "model_sha": None,
                "model_dtype": None,
                "model_device_type": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": settings.max_in_flight,
                "max_best_of": 1,
                "max_stop_sequences": settings.max_stop,
                "max_input_tokens": entry.max_model_len,
                "max_total_tokens": entry.max_model_len,
                "validation_workers": 1,
                "max_client_batch_size": 1,
                "router": "codeserve",
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    return await DIALECT.handle(request, serve)


async def _serve(
    service: CompletionService, ctx: Context, model: str | None, stream: bool | None
) -> Response:
    body: GenerateRequest = await ctx.body(service, GenerateRequest)
    entry = _pick(service, model if model is not None else body.model)
    ctx.model = entry.name
    params = body.parameters
    params.refuse_unsupported()
    if not body.inputs:
        raise InvalidRequestError("`inputs` cannot be empty", param="inputs")
    streaming = body.stream if stream is None else stream
    req = completion_request(
        {
            "model": entry.name,
            "prompt": body.inputs,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature_for_engine(),
            "top_p": params.top_p if params.top_p is not None and params.top_p < 1 else None,
            "top_k": params.top_k,
            "stop": [s for s in params.stop or [] if s] or None,
            "seed": params.seed,
            "repetition_penalty": params.repetition_penalty,
            "frequency_penalty": params.frequency_penalty,
            "stream": streaming,
            "stream_options": usage_stream_options(streaming),
        }
    )
    lead = body.inputs if params.return_full_text else ""
    if not streaming:

        def whole(served: Served) -> bytes:
            answer: dict[str, Any] = {"generated_text": lead + served.texts.get(0, "")}
            if params.details:
                answer["details"] = {
                    "finish_reason": _finish(served.finish.get(0), served.stop_reason.get(0)),
                    "generated_tokens": int(served.usage.get("completion_tokens") or 0),
                    "seed": params.seed,
                    "prefill": [],
                    "tokens": [],
                }
            return orjson.dumps([answer] if stream is None else answer)

        return await ctx.unary(service, req, whole)

    async def reshape(
        chunks: AsyncIterator[dict[str, Any]], state: StreamState
    ) -> AsyncIterator[bytes]:
        # Each piece is held back until the next arrives, so the last one can carry
        # `generated_text` and `details`, as TGI's last event does.
        held: str | None = None
        index = 0
        text = ""
        usage: dict[str, Any] = {}
        finish: tuple[str | None, Any] = (None, None)
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            for _, piece, reason, stop_reason in chunk_pieces(chunk):
                if reason:
                    finish = (reason, stop_reason)
                if not piece:
                    continue
                if held is not None:
                    yield _token_event(index, held)
                    index += 1
                held = piece
                text += piece
        if state.error is not None:
            return
        yield _token_event(
            index,
            held or "",
            special=held is None,
            final={
                "generated_text": lead + text,
                "details": {
                    "finish_reason": _finish(*finish),
                    "generated_tokens": int(usage.get("completion_tokens") or 0),
                    "input_length": int(usage.get("prompt_tokens") or 0),
                    "seed": params.seed,
                },
            },
        )

    return await ctx.stream(service, req, reshape)


def _token_event(
    index: int, text: str, special: bool = False, final: dict[str, Any] | None = None
) -> bytes:
    event = {
        "index": index,
        "token": {"id": 0, "text": text, "logprob": 0.0, "special": special},
        "generated_text": None,
        "details": None,
        "top_tokens": None,
        **(final or {}),
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"
