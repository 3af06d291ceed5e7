"""OpenAI semantics of /v1/completions and /v1/chat/completions.

Validates the request with the gateway's own models, applies limits and backpressure, forwards
only validated fields to the model's engine, and relays the engine's bytes back. It parses only
what metrics need (usage, first-chunk time) and rewrites the model name only when the engine knows
the model by another name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from codeserve.common.error_object import error_object
from codeserve.common.errors import error_location, validation_message
from codeserve.server.admission import Admission
from codeserve.server.config import Settings
from codeserve.server.disconnects import (
    ClientDisconnected,
    settle_unless_disconnected,
    unless_disconnected,
)
from codeserve.server.engines.budget import RequestBudget, budget_for
from codeserve.server.engines.client import EngineCall, raise_for_engine_error
from codeserve.server.engines.health import ModelEntry
from codeserve.server.engines.transformers_serve.requests import (
    collect_stream,
    engine_body,
    split_usage,
)
from codeserve.server.errors import (
    APIError,
    InvalidRequestError,
    ModelNotReadyError,
    PayloadTooLargeError,
    UpstreamError,
)
from codeserve.server.fim.renderer import apply_fim
from codeserve.server.limits import check_limits, check_prompt_fits
from codeserve.server.metrics import GatewayMetrics
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest
from codeserve.server.registry import ModelRegistry
from codeserve.server.stops import StreamStops, split_stops, trim_choices

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
# Sent while a non-streamed answer is being generated, so that no proxy in between cuts a long
# quiet response: whitespace, which JSON allows before the body.
JSON_KEEPALIVE = b" "
# Sent while a stream waits for its first token (queued in a busy engine, or a long prefill on
# a CPU): an SSE comment, which every SSE reader skips. After that a stream shows its progress
# itself, a chunk per token.
SSE_KEEPALIVE = b": keep-alive\n\n"
# What vLLM generates when a completions request sets no max_tokens (a chat answer may fill
# the context instead).
DEFAULT_COMPLETION_TOKENS = 16
_USAGE_MARK = b'"choices":[]'


@dataclass(frozen=True)
class Endpoint:
    path: str
    schema: type[CompletionRequest] | type[ChatCompletionRequest]


COMPLETIONS = Endpoint("/v1/completions", CompletionRequest)
CHAT = Endpoint("/v1/chat/completions", ChatCompletionRequest)


async def beats_until(
    work: asyncio.Future[Any], interval_s: float, beat: bytes
) -> AsyncIterator[bytes]:
    """`beat` every `interval_s` until `work` is done (0: none, just the wait), so that no proxy
    cuts a connection that is quiet meanwhile. The caller takes the result from `work`."""
    while not work.done():
        await asyncio.wait({work}, timeout=interval_s or None)
        if not work.done():
            yield beat


def validation_error(
    exc: ValidationError | RequestValidationError, drop: Collection[str] = ()
) -> InvalidRequestError:
    """A request that failed validation, as the 400 that names the field (`param`)."""
    loc = error_location(exc.errors()[0], drop) if exc.errors() else ()
    return InvalidRequestError(
        f"invalid request: {validation_message(exc, drop)}", param=".".join(map(str, loc)) or None
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes, schema: type[BaseModel]) -> Any:
    if not body:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


class CompletionService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: GatewayMetrics,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.session = session

    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        body = await read_body(request, self.settings.max_body_bytes)
        return await self.serve(request, endpoint, parse_request(body, endpoint.schema))

    async def serve(
        self, request: Request, endpoint: Endpoint, req: CompletionRequest | ChatCompletionRequest
    ) -> Response:
        """Serve a validated request (also used by /infill, which builds its own)."""
        entry = self.registry.get(req.model)
        try:
            if isinstance(req, CompletionRequest) and req.suffix is not None and entry.renderer:
                await entry.renderer.wait()
            return await self._serve(request, endpoint, req, entry)
        except APIError as exc:
            self.metrics.requests.labels(entry.name, str(exc.status_code)).inc()
            raise
        except ClientDisconnected:
            self.metrics.requests.labels(entry.name, "499").inc()
            raise

    async def _serve(
        self,
        request: Request,
        endpoint: Endpoint,
        req: CompletionRequest | ChatCompletionRequest,
        entry: ModelEntry,
    ) -> Response:
        check_limits(req, self.settings, entry.max_model_len)
        if isinstance(req, CompletionRequest) and req.suffix is None and entry.renderer:
            # (FIM prompts are rendered to fit the context instead.)
            await check_prompt_fits(req, entry.renderer.tokenizer, entry.max_model_len)
        # Built first so an invalid request (e.g. `suffix` for a model without FIM) is a 400
        # whatever the engine's state.
        payload, extra_stops = self.engine_payload(req, entry)
        if entry.state != "ready" and not entry.pool.any_available():
            raise ModelNotReadyError(
                f"model {entry.name!r} is {entry.state}; retry later",
                headers={"Retry-After": "5"},
            )
        text_field = "text" if isinstance(req, CompletionRequest) else "content"
        admission = self.registry.admissions[entry.name]
        name = entry.name
        if not admission.try_enter():
            # Queued: a client that gives up leaves the queue at once (its place, or a slot
            # handed to it meanwhile, passes on). The queue gauge is read at scrape time.
            await unless_disconnected(request, admission.acquire())
        self.metrics.in_flight.labels(name).inc()
        prompts = req.prompt_count() if isinstance(req, CompletionRequest) else 1
        candidates = req.n * prompts
        self.metrics.candidates.labels(name).inc(candidates)
        started = time.perf_counter()
        call = EngineCall(
            self.session,
            entry.pool,
            endpoint.path,
            payload,
            name,
            self.budget(req, entry, candidates),
            self.settings.connect_timeout_s,
        )
        handed_over = False
        try:
            if req.stream:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                stops = StreamStops(extra_stops, candidates, text_field) if extra_stops else None
                response = await unless_disconnected(
                    request,
                    self._open_stream(call, entry, admission, started, include_usage, stops),
                )
                handed_over = True
                return response
            # Cancelling the engine call when the client leaves closes its connection: the
            # engine aborts the generation.
            # (An encoder-decoder on transformers is streamed from the engine and collected.)
            collect = entry.on_transformers and bool(
                entry.profile and entry.profile.encoder_decoder
            )
            answer = asyncio.ensure_future(
                self._unary(call, entry, started, extra_stops, text_field, collect)
            )
            if await settle_unless_disconnected(request, answer, self.settings.keepalive_s or None):
                return answer.result()
            # Still generating: answer now and keep the connection warm until the body is ready.
            handed_over = True
            return StreamingResponse(
                self._keep_warm(answer, name, admission), media_type="application/json"
            )
        finally:
            if not handed_over:
                self._finish(name, admission)

    def budget(
        self, req: CompletionRequest | ChatCompletionRequest, entry: ModelEntry, candidates: int
    ) -> RequestBudget:
        max_tokens = req.max_tokens or (
            DEFAULT_COMPLETION_TOKENS
            if isinstance(req, CompletionRequest)
            else entry.max_model_len or 4096
        )
        return budget_for(
            entry.spec,
            self.settings,
            stream=req.stream,
            max_tokens=max_tokens,
            candidates=candidates,
        )

    async def _keep_warm(
        self, answer: asyncio.Future[Response], name: str, admission: Admission
    ) -> AsyncIterator[bytes]:
        """A non-streamed answer that takes longer than `keepalive_s`: its 200 is sent at once,
        then whitespace while the engine works, then the body. An error that happens later
        can no longer change the status: it comes as the OpenAI error object in the body."""
        try:
            async for beat in beats_until(answer, self.settings.keepalive_s, JSON_KEEPALIVE):
                yield beat
            try:
                response = answer.result()
            except APIError as exc:
                self.metrics.requests.labels(name, str(exc.status_code)).inc()
                yield orjson.dumps(exc.body())
                return
            yield bytes(response.body)
        finally:
            if not answer.done():  # the client left: closing the engine call aborts the work
                self.metrics.requests.labels(name, "499").inc()
                answer.cancel()
                await asyncio.gather(answer, return_exceptions=True)
            self._finish(name, admission)

    def engine_payload(
        self, req: CompletionRequest | ChatCompletionRequest, entry: ModelEntry
    ) -> tuple[bytes, list[str]]:
        """The engine's request body, and the stop sequences the gateway must enforce itself."""
        data = req.model_dump(exclude_unset=True, exclude_none=True)
        data["model"] = entry.spec.upstream_model_name
        if isinstance(req, CompletionRequest):
            self.prepare_prompt(req, entry, data)
        if entry.on_transformers and entry.profile is not None:
            # transformers serve keeps a stop string in its text: the gateway cuts every stop.
            body = engine_body(
                req,
                data,
                entry.renderer.tokenizer if entry.renderer else None,
                entry.profile.eos_ids,
                entry.profile.encoder_decoder,
                req.max_tokens or DEFAULT_COMPLETION_TOKENS,
            )
            return orjson.dumps(body), req.stop_list()
        engine_stops, extra_stops = split_stops(req.stop_list(), self.settings.engine_max_stop)
        if extra_stops:
            if getattr(req, "echo", False) or req.logprobs:
                raise InvalidRequestError(
                    f"more than {self.settings.engine_max_stop} stop sequences cannot be "
                    "combined with echo or logprobs",
                    param="stop",
                )
            data["stop"] = engine_stops
        if req.stream:
            # Always ask the engine for usage so token metrics work; the extra chunk is dropped
            # again when the client did not ask for it.
            data["stream_options"] = {"include_usage": True}
        try:
            return orjson.dumps(data), extra_stops
        except orjson.JSONEncodeError as exc:
            # Validated JSON the encoder still refuses: integers beyond 64 bits or nesting
            # deeper than 255 inside free-form fields (chat content parts).
            raise InvalidRequestError(f"request cannot be forwarded: {exc}") from None

    def prepare_prompt(
        self, req: CompletionRequest, entry: ModelEntry, data: dict[str, Any]
    ) -> None:
        """Prompt rendering: with `suffix`, the FIM prompt as token ids (`codeserve.server.fim`)."""
        apply_fim(req, entry.renderer, entry.max_model_len, data)

    def _finish(self, name: str, admission: Admission) -> None:
        admission.release()
        self.metrics.in_flight.labels(name).dec()

    async def _unary(
        self,
        call: EngineCall,
        entry: ModelEntry,
        started: float,
        extra_stops: list[str],
        text_field: str,
        collect: bool = False,
    ) -> Response:
        raw = await self._fetch(call, entry)
        if collect:
            raw = collect_stream(raw, entry.engine_model_name)
        data = orjson.loads(raw)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            self.metrics.record_usage(
                entry.name,
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
        if extra_stops and isinstance(data, dict):
            trim_choices(data.get("choices") or [], extra_stops, text_field)
        if extra_stops or entry.engine_model_name != entry.name:
            data["model"] = entry.name
            raw = orjson.dumps(data)
        self.metrics.duration.labels(entry.name).observe(time.perf_counter() - started)
        self.metrics.requests.labels(entry.name, "200").inc()
        return Response(raw, media_type="application/json")

    async def _fetch(self, call: EngineCall, entry: ModelEntry) -> bytes:
        try:
            async with call as resp:
                await raise_for_engine_error(resp, entry.name)
                return await resp.read()
        except asyncio.TimeoutError:
            raise call.timed_out() from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                502, f"engine for model {entry.name!r} failed: {type(exc).__name__}"
            ) from None

    async def _open_stream(
        self,
        call: EngineCall,
        entry: ModelEntry,
        admission: Admission,
        started: float,
        include_usage: bool,
        stops: StreamStops | None,
    ) -> Response:
        # Open the engine response before answering, so connection failures and engine
        # validation errors still get a proper status code instead of a broken stream.
        try:
            resp = await call.__aenter__()
            await raise_for_engine_error(resp, entry.name)
        except BaseException as exc:
            await call.__aexit__(type(exc), exc, None)
            raise
        return StreamingResponse(
            self._relay(call, resp, entry, admission, started, include_usage, stops),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    async def _relay(
        self,
        call: EngineCall,
        resp: aiohttp.ClientResponse,
        entry: ModelEntry,
        admission: Admission,
        started: float,
        include_usage: bool,
        stops: StreamStops | None,
    ) -> AsyncIterator[bytes]:
        name = entry.name
        rename = None
        if entry.engine_model_name != name:
            rename = (
                orjson.dumps({"model": entry.engine_model_name})[1:-1],
                orjson.dumps({"model": name})[1:-1],
            )
        status = "200"
        first = True
        pending = b""
        error: BaseException | None = None
        reader = resp.content
        try:
            head = asyncio.ensure_future(reader.readany())
            try:
                async for beat in beats_until(head, self.settings.keepalive_s, SSE_KEEPALIVE):
                    yield beat
            finally:
                head.cancel()  # the client left while it waited (a no-op once done)
            chunk = head.result()
            while chunk:  # b"": the engine ended the stream
                # When the engine is ahead, neither reading (buffered) nor writing (not paused)
                # suspends: yield once per chunk so the loop still sees a client that hung up,
                # and the stream is cancelled instead of relaying into the void.
                await asyncio.sleep(0)
                if first:
                    self.metrics.ttft.labels(name).observe(time.perf_counter() - started)
                    first = False
                pending += chunk
                cut = pending.rfind(b"\n\n")
                if cut < 0:
                    chunk = await reader.readany()
                    continue
                events, pending = pending[: cut + 2], pending[cut + 2 :]
                if entry.on_transformers:
                    events = split_usage(events)
                if _USAGE_MARK in events:
                    events = self._take_usage(name, events, include_usage)
                if stops is not None:
                    events = self._apply_stops(events, stops)
                if rename is not None:
                    events = events.replace(*rename)
                if events:
                    yield events
                if stops is not None and stops.should_abort:
                    # Every candidate is done, some at a gateway-enforced stop: end the stream and
                    # close the engine response, which aborts the generation nobody will read.
                    if not events.endswith(DONE):
                        yield DONE
                    break
                chunk = await reader.readany()
            else:
                if entry.on_transformers:  # its stream ends without OpenAI's terminator
                    yield DONE
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = exc
            # aiohttp's read timeout is both a ClientError and a TimeoutError: a timeout.
            status = "504" if isinstance(exc, asyncio.TimeoutError) else "502"
            message = (
                call.budget.expired()
                if status == "504"
                else f"engine connection lost mid-stream ({type(exc).__name__})"
            )
            body = error_object(message, "upstream_error", code="engine_stream_error")
            yield b"data: " + orjson.dumps(body) + b"\n\n" + DONE
        except asyncio.CancelledError:
            status = "499"  # client went away; closing the response aborts the engine request
            error = asyncio.CancelledError()
            raise
        finally:
            await call.__aexit__(type(error) if error else None, error, None)
            self._finish(name, admission)
            self.metrics.duration.labels(name).observe(time.perf_counter() - started)
            self.metrics.requests.labels(name, status).inc()

    @staticmethod
    def _apply_stops(events: bytes, stops: StreamStops) -> bytes:
        out: list[bytes] = []
        for event in events.split(b"\n\n"):
            if not event.startswith(b"data: {"):
                if event:
                    out.append(event + b"\n\n")
                continue
            chunk = orjson.loads(event[6:])
            if not stops.feed(chunk):
                continue
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return b"".join(out)

    def _take_usage(self, name: str, events: bytes, keep: bool) -> bytes:
        """Record usage from the engine's usage chunk; drop that chunk unless the client asked."""
        out: list[bytes] = []
        for event in events.split(b"\n\n"):
            if not event:
                continue
            if _USAGE_MARK in event and event.startswith(b"data: {"):
                try:
                    usage = orjson.loads(event[6:]).get("usage") or {}
                    self.metrics.record_usage(
                        name,
                        int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0),
                    )
                except (orjson.JSONDecodeError, AttributeError, ValueError):
                    pass
                if not keep:
                    continue
            out.append(event + b"\n\n")
        return b"".join(out)
