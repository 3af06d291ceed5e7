"""Ollama's API, for the local-autocomplete plugins whose default it is (Continue, Twinny,
llm.nvim and others): `POST /api/generate`, `POST /api/chat`, `GET /api/tags`,
`POST /api/show`, `GET /api/version`, `GET /api/ps`.

`/api/generate` completes `prompt` as it is (a raw completion: the gateway applies no prompt
template, so `raw` makes no difference); with a non-empty `suffix` (Ollama's rule) the gateway
renders the model's fill-in-the-middle prompt and the answer is the middle. `/api/chat` goes
through the engine's chat template. Both stream by default, one JSON object per line
(`application/x-ndjson`), the last with `done: true`, `done_reason` and token counts. Model
names are the gateway's (`GET /api/tags`); a `:latest` tag is accepted on any of them. Errors are
Ollama's `{"error": "..."}` with the HTTP status; an error mid-stream is such a line.

`options` that map onto the engine: `num_predict` (-1 and -2: no limit of our own), `temperature`,
`top_p`, `top_k`, `min_p`, `stop`, `seed`, `repeat_penalty`, `presence_penalty`,
`frequency_penalty`. Ignored on purpose, since they tune Ollama's own runner or have no vLLM
counterpart: `num_ctx`, `num_batch`, `num_gpu`, `main_gpu`, `num_thread`, `num_keep`, `numa`,
`low_vram`, `f16_kv`, `logits_all`, `vocab_only`, `use_mmap`, `use_mlock`, `embedding_only`,
`repeat_last_n`, `tfs_z`, `typical_p`, `mirostat`, `mirostat_tau`, `mirostat_eta`,
`penalize_newline`, and any option not listed here. Also ignored: `raw`, `template`, `context`,
`system` (generate), `keep_alive` (engines stay loaded), `think`, `logprobs`. Refused (400):
`images`, `format`, and chat `tools` (the engines run without a tool parser). A prompt longer
than the context is cut down rather than refused when it is a FIM prompt, as for /infill.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codeserve.server.dialects.common import (
    Context,
    Dialect,
    Served,
    StreamState,
    chat_request,
    chunk_pieces,
    completion_request,
    fim_prompt,
    fim_prompter,
    usage_stream_options,
)
from codeserve.server.engines.health import ModelEntry
from codeserve.server.errors import (
    APIError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
)
from codeserve.server.protocol import SERVING_STATES
from codeserve.server.registry import ModelRegistry
from codeserve.server.serving import CompletionService

# The Ollama API level this emulation follows (generate with suffix, chat, tags, show, ps).
OLLAMA_VERSION = "0.12.0"
NDJSON = "application/x-ndjson"
# Far in the future: the gateway never unloads a model.
_NEVER = "2999-01-01T00:00:00Z"
_CONFIG = ConfigDict(extra="ignore", protected_namespaces=())


class Options(BaseModel):
    """The `options` the engine honours; every other option is ignored (see the module doc)."""

    model_config = _CONFIG

    num_predict: int | None = Field(None, ge=-2)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    stop: list[str] | None = None
    seed: int | None = None
    repeat_penalty: float | None = Field(None, gt=0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def sampling(self) -> dict[str, Any]:
        # Ollama spells "no limit" -1 (and "fill the context" -2); 0 means nothing at all.
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else None
        return {
            "max_tokens": limit,
            "temperature": self.temperature,
            "top_p": self.top_p if self.top_p else None,  # 0: Ollama's "off"
            "top_k": self.top_k if self.top_k and self.top_k > 0 else None,
            "min_p": self.min_p,
            "stop": [s for s in self.stop or [] if s] or None,
            # Ollama's seed -1 (or none) is a random seed.
            "seed": self.seed if self.seed is not None and self.seed >= 0 else None,
            "repetition_penalty": self.repeat_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }


class _Request(BaseModel):
    model_config = _CONFIG

    model: str = Field(min_length=1)
    stream: bool = True  # Ollama streams unless told not to
    options: Options = Field(default_factory=Options)
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _no_options(cls, value: Any) -> Any:
        return {} if value is None else value

    def check_refused(self) -> None:
        if self.format:
            raise InvalidRequestError(
                "`format` (structured output) is not supported by this gateway", param="format"
            )


class GenerateRequest(_Request):
    prompt: str = ""
    suffix: str | None = None
    raw: bool | None = None
    system: str | None = None
    images: list[str] | None = None


class ChatRequest(_Request):
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class ModelRequest(BaseModel):
    model_config = _CONFIG

    # `name` is what older clients send.
    model: str | None = Field(None, min_length=1)
    name: str | None = Field(None, min_length=1)


class Ollama(Dialect):
    name = "ollama"
    stream_media_type = NDJSON

    def error_response(self, exc: APIError) -> Response:
        return JSONResponse(
            {"error": exc.message}, status_code=exc.status_code, headers=exc.headers
        )

    def stream_error(self, error: dict[str, Any]) -> bytes:
        return _line({"error": _message(error)})

    def unary_error(self, error: dict[str, Any]) -> bytes:
        return orjson.dumps({"error": _message(error)})


DIALECT = Ollama()


def _message(error: dict[str, Any]) -> str:
    detail = error.get("error")
    return str(detail.get("message") if isinstance(detail, dict) else detail)


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve(registry: ModelRegistry, name: str) -> ModelEntry:
    """The gateway's model of that name; Ollama's default tag `:latest` may be appended."""
    if name not in registry.entries and name.endswith(":latest"):
        name = name.removesuffix(":latest")
    if name not in registry.entries:
        raise ModelNotFoundError(f"model '{name}' not found", param="model")
    return registry.entries[name]


def _done_reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


def _timings(started: float, first: float | None, usage: dict[str, Any]) -> dict[str, int]:
    now = time.perf_counter()
    first = first or now
    return {
        "total_duration": int((now - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
        "prompt_eval_duration": int((first - started) * 1e9),
        "eval_count": int(usage.get("completion_tokens") or 0),
        "eval_duration": int((now - first) * 1e9),
    }


# -- /api/generate and /api/chat ------------------------------------------------------------


async def generate(request: Request) -> Response:
    return await DIALECT.handle(request, _generate)


async def chat(request: Request) -> Response:
    return await DIALECT.handle(request, _chat)


async def _generate(service: CompletionService, ctx: Context) -> Response:
    body: GenerateRequest = await ctx.body(service, GenerateRequest)
    entry = resolve(service.registry, body.model)
    ctx.model = entry.name
    body.check_refused()
    if body.images:
        raise InvalidRequestError("`images` are not supported by this gateway", param="images")
    sampling = body.options.sampling()
    if not body.prompt and not body.suffix:
        # Ollama's way to load a model: nothing to generate.
        return _answer_now(ctx, entry, body.stream, "load", {"response": ""})
    if body.options.num_predict == 0:
        return _answer_now(ctx, entry, body.stream, "length", {"response": ""})
    prompt: str | list[int] = body.prompt
    stop_ids = None
    if body.suffix:
        prompter = await fim_prompter(entry)
        prompt, _ = fim_prompt(entry, prompter, body.prompt, body.suffix, sampling["max_tokens"])
        stop_ids = prompter.stop_ids
    req = completion_request(
        {
            "model": entry.name,
            "prompt": prompt,
            **sampling,
            "stop_token_ids": stop_ids,
            "stream": body.stream,
            "stream_options": usage_stream_options(body.stream),
        }
    )
    return await _run(service, ctx, entry, req, body.stream, "response")


async def _chat(service: CompletionService, ctx: Context) -> Response:
    body: ChatRequest = await ctx.body(service, ChatRequest)
    entry = resolve(service.registry, body.model)
    ctx.model = entry.name
    body.check_refused()
    if body.tools:
        raise InvalidRequestError("`tools` are not supported by this gateway", param="tools")
    if not body.messages:
        return _answer_now(
            ctx, entry, body.stream, "load", {"message": {"role": "assistant", "content": ""}}
        )
    messages = []
    for i, message in enumerate(body.messages):
        if message.get("images"):
            raise InvalidRequestError(
                "`images` are not supported by this gateway", param=f"messages.{i}.images"
            )
        messages.append({k: message[k] for k in ("role", "content") if k in message})
    sampling = body.options.sampling()
    if body.options.num_predict == 0:
        return _answer_now(
            ctx, entry, body.stream, "length", {"message": {"role": "assistant", "content": ""}}
        )
    req = chat_request(
        {
            "model": entry.name,
            "messages": messages,
            **sampling,
            "stream": body.stream,
            "stream_options": usage_stream_options(body.stream),
        }
    )
    return await _run(service, ctx, entry, req, body.stream, "message")


def _answer_now(
    ctx: Context, entry: ModelEntry, stream: bool, reason: str, content: dict[str, Any]
) -> Response:
    ctx.count("200")
    data = {
        "model": entry.name,
        "created_at": _now(),
        **content,
        "done": True,
        "done_reason": reason,
    }
    return Response(
        _line(data) if stream else orjson.dumps(data),
        media_type=NDJSON if stream else "application/json",
    )


async def _run(
    service: CompletionService, ctx: Context, entry: ModelEntry, req: Any, stream: bool, field: str
) -> Response:
    """Serve `req` and answer in Ollama's generate (`response`) or chat (`message`) shape."""

    def content(text: str) -> dict[str, Any]:
        if field == "response":
            return {"response": text}
        return {"message": {"role": "assistant", "content": text}}

    if not stream:

        def whole(served: Served) -> bytes:
            return orjson.dumps(
                {
                    "model": entry.name,
                    "created_at": _now(),
                    **content(served.texts.get(0, "")),
                    "done": True,
                    "done_reason": _done_reason(served.finish.get(0)),
                    **_timings(ctx.started, None, served.usage),
                }
            )

        return await ctx.unary(service, req, whole)

    async def reshape(
        chunks: AsyncIterator[dict[str, Any]], state: StreamState
    ) -> AsyncIterator[bytes]:
        usage: dict[str, Any] = {}
        finish = None
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            for _, text, reason, _ in chunk_pieces(chunk):
                finish = reason or finish
                if text:
                    yield _line(
                        {"model": entry.name, "created_at": _now(), **content(text), "done": False}
                    )
        if state.error is None:
            yield _line(
                {
                    "model": entry.name,
                    "created_at": _now(),
                    **content(""),
                    "done": True,
                    "done_reason": _done_reason(finish),
                    **_timings(ctx.started, state.first_token_at, usage),
                }
            )

    return await ctx.stream(service, req, reshape)


# -- the model endpoints -------------------------------------------------------------------


def _details(entry: ModelEntry) -> dict[str, Any]:
    family = entry.fim_template or "unknown"
    return {
        "parent_model": "",
        "format": "safetensors",
        "family": family,
        "families": [family],
        "parameter_size": "",
        "quantization_level": "",
    }


def _card(entry: ModelEntry) -> dict[str, Any]:
    digest = hashlib.sha256(f"{entry.name}\0{entry.spec.model}".encode()).hexdigest()
    modified = datetime.fromtimestamp(entry.created, timezone.utc)
    return {
        "name": entry.name,
        "model": entry.name,
        "modified_at": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": 0,
        "digest": digest,
        "details": _details(entry),
    }


async def _lookups(request: Request, answer: Any) -> Response:
    """Model endpoints: no engine involved, Ollama's error shape still."""

    async def serve(service: CompletionService, ctx: Context) -> Response:
        data = await answer(service, ctx)
        ctx.count("200")
        return JSONResponse(data)

    return await DIALECT.handle(request, serve)


async def tags(request: Request) -> Response:
    async def answer(service: CompletionService, ctx: Context) -> dict[str, Any]:
        return {"models": [_card(e) for e in service.registry.entries.values()]}

    return await _lookups(request, answer)


async def running(request: Request) -> Response:
    async def answer(service: CompletionService, ctx: Context) -> dict[str, Any]:
        return {
            "models": [
                {
                    **_card(e),
                    "expires_at": _NEVER,
                    "size_vram": 0,
                    **({"context_length": e.max_model_len} if e.max_model_len else {}),
                }
                for e in service.registry.entries.values()
                if e.state in SERVING_STATES
            ]
        }

    return await _lookups(request, answer)


async def show(request: Request) -> Response:
    async def answer(service: CompletionService, ctx: Context) -> dict[str, Any]:
        body: ModelRequest = await ctx.body(service, ModelRequest)
        name = body.model or body.name
        if name is None:
            raise InvalidRequestError("`model` is required", param="model")
        entry = resolve(service.registry, name)
        ctx.model = entry.name
        capabilities = ["completion"]
        if entry.renderer is not None:
            await entry.renderer.wait()
            if entry.renderer.prompter is not None:
                capabilities.append("insert")  # Ollama's word for `suffix` support
        arch = entry.fim_template or "unknown"
        info: dict[str, Any] = {"general.architecture": arch}
        if entry.max_model_len:
            info[f"{arch}.context_length"] = entry.max_model_len
        modified = datetime.fromtimestamp(entry.created, timezone.utc)
        return {
            "modelfile": "",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": _details(entry),
            "model_info": info,
            "capabilities": capabilities,
            "modified_at": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    return await _lookups(request, answer)


async def version(request: Request) -> Response:
    return JSONResponse({"version": OLLAMA_VERSION})


async def unsupported(request: Request) -> Response:
    error = NotFoundError(
        f"{request.method} {request.url.path} is not supported by this "
        "gateway: it serves the models of its models file (see /api/tags)"
    )
    return DIALECT.error_response(error)
