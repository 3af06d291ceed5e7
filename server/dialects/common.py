"""What every dialect adapter shares: picking the model, rendering a FIM prompt, calling the one
serving path (`CompletionService.serve`), reading its OpenAI answer back (whole, kept warm, or
streamed), counting the request under its dialect, and turning errors into the dialect's shape.

An adapter only translates: its request into a `CompletionRequest` or `ChatCompletionRequest`,
and the OpenAI answer into its own. Limits, backpressure, stops, metrics, timeouts and aborting
the engine when the client leaves all happen in `CompletionService`, as for /v1/completions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from codeserve.common.sse import SSEDecoder
from codeserve.server.disconnects import ClientDisconnected
from codeserve.server.engines.health import ModelEntry
from codeserve.server.errors import APIError, InvalidRequestError, UnavailableError
from codeserve.server.fim.prompter import FimPrompter
from codeserve.server.fim.renderer import prompt_budget
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest, FileContext
from codeserve.server.serving import (
    CHAT,
    COMPLETIONS,
    SSE_HEADERS,
    CompletionService,
    parse_request,
    read_body,
    validation_error,
)

# Error types of the OpenAI error object, as HTTP statuses (for counting errors that reach a
# dialect inside a 200: mid-stream, or after a kept-warm answer started).
_TYPE_STATUS = {
    "invalid_request_error": "400",
    "authentication_error": "401",
    "rate_limit_error": "429",
    "service_unavailable": "503",
    "upstream_error": "502",
}


def error_status(error: dict[str, Any]) -> str:
    if error.get("code") == "engine_timeout":
        return "504"
    return _TYPE_STATUS.get(str(error.get("type")), "500")


@dataclass
class Served:
    """What the serving path answered, read back: text per candidate, why each ended, usage."""

    texts: dict[int, str]
    finish: dict[int, str | None]
    stop_reason: dict[int, Any]
    usage: dict[str, Any]


class Dialect:
    """One API dialect: its name (the `dialect` label of codeserve_dialect_requests) and its
    error shape. The default shape is the OpenAI error object."""

    name = "openai"
    stream_media_type = "text/event-stream"

    def error_response(self, exc: APIError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    def stream_error(self, error: dict[str, Any]) -> bytes:
        """An error that happens after the 200 went out, in the stream's own framing."""
        return b"data: " + orjson.dumps(error) + b"\n\n"

    def unary_error(self, error: dict[str, Any]) -> bytes:
        """An error that happens after a kept-warm 200 went out, as the whole body."""
        return orjson.dumps(error)

    # -- the request's lifecycle --------------------------------------------------------

    async def handle(
        self, request: Request, serve: Callable[[CompletionService, Context], Awaitable[Response]]
    ) -> Response:
        """Run one request: every APIError (ours or the serving path's) becomes this dialect's
        error, and the request is counted under this dialect."""
        ctx = Context(self, request)
        try:
            service = service_of(request)
            ctx.metrics = service.metrics
            return await serve(service, ctx)
        except APIError as exc:
            ctx.count(str(exc.status_code))
            return self.error_response(exc)
        except ClientDisconnected:
            ctx.count("499")
            raise


def service_of(request: Request) -> CompletionService:
    """The app's CompletionService; 503 while the gateway drains (as the OpenAI routes)."""
    if request.app.state.drain.draining:
        raise UnavailableError("the gateway is shutting down", headers={"Retry-After": "5"})
    service: CompletionService = request.app.state.service
    return service


class Context:
    """One request in a dialect: which model it resolved to (the metric label) and counting."""

    def __init__(self, dialect: Dialect, request: Request) -> None:
        self.dialect = dialect
        self.request = request
        self.model = ""  # known models only, so a client cannot grow the label set
        self.metrics: Any = None
        self.started = time.perf_counter()

    def count(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.dialect_requests.labels(self.dialect.name, self.model, status).inc()

    async def body(self, service: CompletionService, schema: type[BaseModel]) -> Any:
        return parse_request(await read_body(self.request, service.settings.max_body_bytes), schema)

    # -- calling the serving path -------------------------------------------------------

    async def serve(
        self, service: CompletionService, req: CompletionRequest | ChatCompletionRequest
    ) -> Response:
        endpoint = COMPLETIONS if isinstance(req, CompletionRequest) else CHAT
        return await service.serve(self.request, endpoint, req)

    async def unary(
        self,
        service: CompletionService,
        req: CompletionRequest | ChatCompletionRequest,
        shape: Callable[[Served], bytes],
        media_type: str = "application/json",
    ) -> Response:
        """A non-streamed request: the OpenAI answer, read back and reshaped by `shape`. An
        answer the serving path keeps warm (whitespace while the engine works) stays warm."""
        response = await self.serve(service, req)
        if not isinstance(response, StreamingResponse):
            self.count("200")
            return Response(
                shape(read_unary(orjson.loads(bytes(response.body)))), media_type=media_type
            )
        return StreamingResponse(
            self._kept_warm(response.body_iterator, shape),  # type: ignore[arg-type]
            media_type=media_type,
        )

    async def _kept_warm(
        self, body: AsyncIterator[bytes], shape: Callable[[Served], bytes]
    ) -> AsyncIterator[bytes]:
        status = "499"
        try:
            whole = b""
            async for piece in body:
                if not whole and not piece.strip():
                    yield piece  # keep-alive whitespace: JSON allows it before the value
                    continue
                whole += piece
            data = orjson.loads(whole)
            if isinstance(data, dict) and "error" in data and "choices" not in data:
                status = error_status(data["error"])
                yield self.dialect.unary_error(data)
            else:
                status = "200"
                yield shape(read_unary(data))
        finally:
            self.count(status)
            await _close(body)

    async def stream(
        self,
        service: CompletionService,
        req: CompletionRequest | ChatCompletionRequest,
        reshape: Reshape,
    ) -> Response:
        """A streamed request: the OpenAI chunks, parsed, go through `reshape`; an error the
        serving path reports mid-stream ends the chunks and comes out in the dialect's
        framing. A client that leaves cancels the whole chain, down to the engine call."""
        response = await self.serve(service, req)
        assert isinstance(response, StreamingResponse)
        return StreamingResponse(
            self._restream(response.body_iterator, reshape),  # type: ignore[arg-type]
            media_type=self.dialect.stream_media_type,
            headers=SSE_HEADERS,
        )

    async def _restream(self, body: AsyncIterator[bytes], reshape: Reshape) -> AsyncIterator[bytes]:
        state = StreamState()
        chunks = _chunks(body, state)
        try:
            async for out in reshape(chunks, state):
                yield out
            if state.error is not None:
                yield self.dialect.stream_error(state.error)
            else:
                state.status = "200"
        finally:
            self.count(state.status)
            await chunks.aclose()
            await _close(body)


@dataclass
class StreamState:
    """How a relayed stream ended: `error` is the OpenAI error object the serving path sent
    mid-stream (then a dialect skips its normal closing message)."""

    status: str = "499"
    error: dict[str, Any] | None = None
    first_token_at: float | None = None


Reshape = Callable[[AsyncIterator[dict[str, Any]], StreamState], AsyncIterator[bytes]]


async def _chunks(
    body: AsyncIterator[bytes], state: StreamState
) -> AsyncGenerator[dict[str, Any], None]:
    """OpenAI server-sent events in, chunk objects out, until [DONE] or an error event."""
    events: list[bytes] = []
    decoder = SSEDecoder(events.append)
    async for piece in body:
        decoder.feed(piece)
        for event in events:
            if not event.startswith(b"{"):
                continue  # [DONE]: each dialect ends its stream its own way
            data = orjson.loads(event)
            if "error" in data:
                state.error = data
                state.status = error_status(data["error"] or {})
                return
            if state.first_token_at is None and any(t for _, t, _, _ in chunk_pieces(data)):
                state.first_token_at = time.perf_counter()
            yield data
        events.clear()


async def _close(iterator: AsyncIterator[bytes]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()


def read_unary(data: dict[str, Any]) -> Served:
    """An OpenAI completion or chat completion answer, by candidate."""
    served = Served({}, {}, {}, data.get("usage") or {})
    for choice in data.get("choices") or []:
        index = int(choice.get("index") or 0)
        message = choice.get("message")
        text = (message or {}).get("content") if message is not None else choice.get("text")
        served.texts[index] = text or ""
        served.finish[index] = choice.get("finish_reason")
        served.stop_reason[index] = choice.get("stop_reason")
    return served


def chunk_pieces(chunk: dict[str, Any]) -> list[tuple[int, str, str | None, Any]]:
    """(index, text, finish_reason, stop_reason) of each choice of an OpenAI stream chunk."""
    out = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta")
        text = (delta or {}).get("content") if delta is not None else choice.get("text")
        out.append(
            (
                int(choice.get("index") or 0),
                text or "",
                choice.get("finish_reason"),
                choice.get("stop_reason"),
            )
        )
    return out


# -- models and FIM ---------------------------------------------------------------------


async def fim_prompter(entry: ModelEntry, param: str = "suffix") -> FimPrompter:
    if entry.renderer is None:
        raise InvalidRequestError(f"model {entry.name!r} cannot fill in the middle", param="model")
    await entry.renderer.wait()
    prompter = entry.renderer.prompter
    if prompter is None:
        raise InvalidRequestError(
            f"model {entry.name!r} does not support fill-in-the-middle: {entry.renderer.reason}",
            param=param,
        )
    return prompter


def fim_prompt(
    entry: ModelEntry,
    prompter: FimPrompter,
    prefix: str,
    suffix: str,
    max_tokens: int | None,
    files: list[FileContext] | None = None,
) -> tuple[list[int], bool]:
    """The FIM prompt's token ids, cut down to fit the context as llama.cpp does (oldest files
    first, then the far ends of prefix and suffix) instead of refused: an IDE cannot react to a
    400 mid-keystroke. Also whether it was cut."""
    rendering = prompter.render(
        prefix,
        suffix,
        files or (),
        budget=prompt_budget(entry.max_model_len, max_tokens),
        overflow="truncate",
    )
    return rendering.token_ids, rendering.truncated


def completion_request(fields: dict[str, Any]) -> CompletionRequest:
    """A CompletionRequest from a dialect's translated fields (None means unset); fields the
    dialect got wrong in OpenAI terms are a 400 naming the OpenAI field."""
    try:
        return CompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise validation_error(exc) from None


def chat_request(fields: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(
            {k: v for k, v in fields.items() if v is not None}
        )
    except ValidationError as exc:
        raise validation_error(exc) from None


def usage_stream_options(stream: bool) -> dict[str, bool] | None:
    """Dialects report token counts at the end of a stream: ask for the usage chunk."""
    return {"include_usage": True} if stream else None
