"""Async client for any OpenAI-compatible `/completions` and `/chat/completions` endpoint.

Retries (exponential backoff, Retry-After honoured) only what may succeed later: 429, 5xx and
broken connections. A 400 that says `n` is too large teaches the client the endpoint's cap, and the
request is split. Authentication or unknown-model answers end the run with one clear line.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from pydantic import BaseModel

from codeserve.client.protocol import Generation, SamplingParams
from codeserve.common.errors import CliError
from codeserve.common.sse import DONE, SSEDecoder
from codeserve.scoring.prompt_format import PromptRequest

Sleep = Callable[[float], Awaitable[None]]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_FATAL_STATUSES = frozenset({401, 403, 404})
# Broken or refused connections; a read timeout is not retried: the same slow generation would
# just time out again.
_RETRY_EXCEPTIONS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)
_N_MENTION = re.compile(
    r"(['`\"]n['`\"]|\bn\b\s*(must|should|is|cannot|can't|exceeds|>|<|=))", re.I
)
_N_CAP = re.compile(
    r"(at most|<=|maximum(?: of| is)?|max(?:imum)?\s*(?:is|of)?|up to)\s*(\d+)", re.I
)


class EndpointConfig(BaseModel):
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retries: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    max_n_per_request: int | None = None
    stream: bool = False
    max_connections: int = 64
    # OpenAI's API, and vLLM since it mirrors it, reject more than 4 stop sequences; the prompt
    # formats apply their whole list client-side, so sending the first few loses nothing.
    max_stop_sequences: int = 4


class FatalEndpointError(CliError):
    """The endpoint refuses every request (bad key, unknown model, nothing listening)."""


class _NTooLarge(Exception):
    def __init__(self, cap: int | None) -> None:
        super().__init__(cap)
        self.cap = cap


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Rejected(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def normalize_base_url(url: str) -> str:
    """`http://host:port` and `http://host:port/` mean the OpenAI base `http://host:port/v1`;
    any other path is used as given (some servers mount the API elsewhere)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"--endpoint must be an http(s) URL, got {url!r}")
    path = parsed.path.rstrip("/")
    return str(parsed.copy_with(path=path or "/v1")).rstrip("/")


def error_message(response: httpx.Response) -> str:
    """The human message of an OpenAI error object, a FastAPI `detail`, or the body text."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in body:
            return str(body["detail"])[:300]
        if "message" in body:
            return str(body["message"])
    return response.text.strip()[:300]


def _error_param(response: httpx.Response) -> str | None:
    try:
        error = orjson.loads(response.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return error.get("param") if isinstance(error, dict) else None


def n_cap_from_error(response: httpx.Response) -> tuple[bool, int | None]:
    """Whether a 400 complains about `n`, and the cap it states if any."""
    message = error_message(response)
    if _error_param(response) != "n" and not _N_MENTION.search(message):
        return False, None
    match = _N_CAP.search(message)
    return True, int(match.group(2)) if match else None


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _StreamAccumulator:
    """Collects interleaved SSE chunks of n candidates by `choices[].index`."""

    def __init__(self, n: int, kind: str) -> None:
        self.parts: list[list[str]] = [[] for _ in range(n)]
        self.finish: list[str | None] = [None] * n
        self.kind = kind
        self.first_token_at: float | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False

    def take(self, data: bytes) -> None:
        """One SSE event's data: a chunk, or the closing `[DONE]` (anything after it is not
        the answer's)."""
        if self.done:
            return
        if data == DONE:
            self.done = True
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            text = data[:200].decode(errors="replace")
            raise _Rejected(f"malformed stream chunk: {text!r}", 200) from None
        self.add(chunk)

    def add(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("error"), dict):
            raise _Rejected(str(chunk["error"].get("message", chunk["error"])), 200)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            if not 0 <= index < len(self.parts):
                continue
            if self.kind == "chat":
                text = (choice.get("delta") or {}).get("content") or ""
            else:
                text = choice.get("text") or ""
            if text:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.parts[index].append(text)
            if choice.get("finish_reason"):
                self.finish[index] = choice["finish_reason"]


class EndpointClient:
    """One per run; use as `async with EndpointClient(config) as client:`."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.base_url = normalize_base_url(config.base_url)
        self.max_n = config.max_n_per_request
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            transport=transport,
        )

    async def __aenter__(self) -> EndpointClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def check_model(self) -> None:
        """Fail fast on an unreachable endpoint, a rejected key or a model it does not serve.
        Servers without a `/models` route are given the benefit of the doubt."""
        url = f"{self.base_url}/models"
        try:
            response = await self._http.get(url)
        except httpx.TransportError as exc:
            raise FatalEndpointError(f"cannot reach {url}: {_describe(exc)}") from None
        if response.status_code in (401, 403):
            raise FatalEndpointError(
                f"{url} refused the API key ({response.status_code}: {error_message(response)})"
            )
        if response.status_code != 200:
            return
        try:
            served = [str(m.get("id")) for m in orjson.loads(response.content).get("data", [])]
        except (orjson.JSONDecodeError, AttributeError):
            return
        if served and self.config.model not in served:
            raise FatalEndpointError(
                f"model {self.config.model!r} is not served at {self.base_url} "
                f"(served: {', '.join(served)})"
            )

    async def complete(
        self, prompt: PromptRequest, params: SamplingParams, n: int
    ) -> list[Generation]:
        """n candidates for one prompt, in as many requests as the endpoint's `n` cap needs.
        A failed request is returned (with `error`) and ends the batch; the caller may retry
        the missing candidates later."""
        done: list[Generation] = []
        remaining = n
        while remaining > 0:
            size = min(remaining, self.max_n or remaining)
            try:
                generation = await self._request_with_retries(prompt, params, size)
            except _NTooLarge as exc:
                self.max_n = exc.cap if exc.cap and exc.cap < size else max(1, size // 2)
                continue
            done.append(generation)
            if not generation.ok:
                break
            remaining -= size
        return done

    async def _request_with_retries(
        self, prompt: PromptRequest, params: SamplingParams, n: int
    ) -> Generation:
        attempt = 0
        while True:
            attempt += 1
            sent_at = time.time()
            try:
                generation = await self._request_once(prompt, params, n)
                generation.attempts = attempt
                return generation
            except _Retryable as exc:
                if attempt > self.config.max_retries:
                    return _failed(
                        n, sent_at, attempt, exc.status, f"{exc} (gave up after {attempt} attempts)"
                    )
                await self._sleep(self._backoff(attempt, exc.retry_after))
            except _Rejected as exc:
                return _failed(n, sent_at, attempt, exc.status, str(exc))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (attempt - 1))
        # Jitter spreads out the retries of many concurrent requests hit by the same outage.
        return ceiling * (0.5 + random.random() / 2)

    def _body(self, prompt: PromptRequest, params: SamplingParams, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if prompt.stop:
            body["stop"] = prompt.stop[: self.config.max_stop_sequences]
        if prompt.kind == "chat":
            body["messages"] = [m.model_dump(exclude_none=True) for m in prompt.messages or []]
        else:
            body["prompt"] = prompt.prompt or ""
            if prompt.suffix is not None:
                body["suffix"] = prompt.suffix
        if self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _request_once(
        self, prompt: PromptRequest, params: SamplingParams, n: int
    ) -> Generation:
        route = "chat/completions" if prompt.kind == "chat" else "completions"
        url = f"{self.base_url}/{route}"
        body = self._body(prompt, params, n)
        sent_at = time.time()
        started = time.perf_counter()
        try:
            async with self._http.stream(
                "POST",
                url,
                content=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    self._raise_for_status(response, n)
                if self.config.stream:
                    acc = _StreamAccumulator(n, prompt.kind)
                    await _read_sse(response, acc)
                    return _from_stream(acc, n, sent_at, started)
                await response.aread()
        except _RETRY_EXCEPTIONS as exc:
            raise _Retryable(_describe(exc), None, None) from None
        except httpx.TimeoutException as exc:
            raise _Rejected(
                f"timed out after {self.config.timeout_s:g}s ({_describe(exc)})", 0
            ) from None
        return _from_json(response, prompt.kind, n, sent_at, started)

    def _raise_for_status(self, response: httpx.Response, n: int) -> None:
        status = response.status_code
        message = f"HTTP {status}: {error_message(response)}"
        if status in _RETRY_STATUSES or status >= 500:
            raise _Retryable(
                message, status, retry_after_seconds(response.headers.get("retry-after"))
            )
        if status == 400 and n > 1:
            about_n, cap = n_cap_from_error(response)
            if about_n:
                raise _NTooLarge(cap)
        if status in _FATAL_STATUSES:
            raise FatalEndpointError(f"{response.request.url} answered {message}")
        raise _Rejected(message, status)


async def _read_sse(response: httpx.Response, acc: _StreamAccumulator) -> None:
    decoder = SSEDecoder(acc.take)
    async for piece in response.aiter_bytes():
        decoder.feed(piece)
        if acc.done:
            return


def _from_stream(acc: _StreamAccumulator, n: int, sent_at: float, started: float) -> Generation:
    usage = acc.usage or {}
    return Generation(
        n=n,
        texts=["".join(parts) for parts in acc.parts],
        finish_reasons=acc.finish,
        sent_at=sent_at,
        ttft_s=None if acc.first_token_at is None else acc.first_token_at - started,
        latency_s=time.perf_counter() - started,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        status=200,
    )


def _from_json(
    response: httpx.Response, kind: str, n: int, sent_at: float, started: float
) -> Generation:
    latency = time.perf_counter() - started
    try:
        body = orjson.loads(response.content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            # A gateway that kept a long answer alive with whitespace had to send its 200
            # first; an error that came later is this body (Codeserve's keepalive_s).
            raise _Retryable(f"HTTP 200 with an error: {error_message(response)}", None, None)
        choices = sorted(body["choices"], key=lambda c: int(c.get("index", 0)))
        if kind == "chat":
            texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        else:
            texts = [c.get("text") or "" for c in choices]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise _Rejected(f"malformed response: {response.text[:200]!r}", 200) from None
    usage = body.get("usage") or {}
    generation = Generation(
        n=n,
        texts=texts,
        finish_reasons=[c.get("finish_reason") for c in choices],
        sent_at=sent_at,
        latency_s=latency,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        status=200,
    )
    if len(texts) != n:
        generation.error = f"asked for {n} candidates, got {len(texts)}"
    return generation


def _failed(n: int, sent_at: float, attempts: int, status: int | None, message: str) -> Generation:
    return Generation(n=n, sent_at=sent_at, attempts=attempts, status=status, error=message)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
