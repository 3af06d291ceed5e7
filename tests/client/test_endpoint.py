"""The OpenAI-compatible client: against the loadtest mock (real HTTP) and scripted transports."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from codeserve.client.endpoint import (
    EndpointClient,
    EndpointConfig,
    FatalEndpointError,
    normalize_base_url,
    retry_after_seconds,
)
from codeserve.client.protocol import SamplingParams
from codeserve.common.chat import ChatMessage
from codeserve.common.errors import CliError
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.scoring.prompt_format import PromptRequest

PROMPT = PromptRequest(kind="completion", prompt="def f():\n", stop=["\ndef"])
CHAT = PromptRequest(kind="chat", messages=[ChatMessage(role="user", content="hi")])
PARAMS = SamplingParams(temperature=0.2, max_tokens=8)


class Sleeps:
    """Records backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def scripted(
    responses: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1](request)

    return httpx.MockTransport(handler), seen


def ok_body(n: int) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(
        200,
        json={
            "choices": [
                {"index": i, "text": f"c{i}", "finish_reason": "stop"} for i in reversed(range(n))
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2 * n},
        },
    )


def status(
    code: int,
    message: str = "boom",
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    body = {"error": {"message": message, "type": "x", "param": param, "code": None}}
    return lambda _: httpx.Response(code, json=body, headers=headers or {})


async def test_streamed_n_candidates_against_the_mock_have_ttft_usage_and_order() -> None:
    async with MockServer(MockConfig(ttft_ms=20, itl_ms=2, output_tokens=5)) as url:
        async with EndpointClient(EndpointConfig(base_url=url, model="m", stream=True)) as client:
            [gen] = await client.complete(PROMPT, PARAMS, 3)
            [chat] = await client.complete(CHAT, PARAMS, 2)
    assert gen.ok and len(gen.texts) == 3 and all(t.count("tok") == 5 for t in gen.texts)
    assert gen.ttft_s is not None and 0.015 < gen.ttft_s <= gen.latency_s  # type: ignore[operator]
    assert gen.completion_tokens == 15 and gen.finish_reasons == ["length"] * 3
    assert chat.ok and len(chat.texts) == 2 and chat.texts[0]


async def test_n_above_the_endpoint_cap_is_split_into_allowed_requests() -> None:
    async with MockServer(MockConfig(max_n=2, output_tokens=1)) as url:
        async with EndpointClient(EndpointConfig(base_url=url + "/v1", model="m")) as client:
            gens = await client.complete(PROMPT, PARAMS, 5)
            assert client.max_n == 2
    assert [g.n for g in gens] == [2, 2, 1] and all(g.ok for g in gens)


async def test_server_errors_are_retried_until_success_then_counted() -> None:
    sleeps = Sleeps()
    async with MockServer(MockConfig(fail_first=2, fail_status=503, output_tokens=1)) as url:
        config = EndpointConfig(base_url=url, model="m", backoff_initial_s=0.1)
        async with EndpointClient(config, sleep=sleeps) as client:
            [gen] = await client.complete(PROMPT, PARAMS, 1)
    assert gen.ok and gen.attempts == 3
    assert (
        len(sleeps.waits) == 2 and 0.05 <= sleeps.waits[0] <= 0.1 and 0.1 <= sleeps.waits[1] <= 0.2
    )


async def test_retry_after_is_honoured_and_retries_give_up() -> None:
    transport, seen = scripted([status(429, headers={"Retry-After": "7"})])
    sleeps = Sleeps()
    config = EndpointConfig(base_url="http://127.0.0.1:9", model="m", max_retries=2)
    async with EndpointClient(config, transport=transport, sleep=sleeps) as client:
        [gen] = await client.complete(PROMPT, PARAMS, 2)
    assert sleeps.waits == [7.0, 7.0] and len(seen) == 3
    assert not gen.ok and gen.status == 429 and "gave up after 3 attempts" in (gen.error or "")


async def test_an_error_after_keepalive_whitespace_is_retried() -> None:
    """A gateway that kept a long answer alive sent 200 first; its later error is the body."""
    late_error = lambda _: httpx.Response(  # noqa: E731
        200,
        content=b"   " + b'{"error": {"message": "engine timed out", "type": "upstream_error"}}',
    )
    transport, seen = scripted([late_error, ok_body(1)])
    sleeps = Sleeps()
    config = EndpointConfig(base_url="http://127.0.0.1:9", model="m")
    async with EndpointClient(config, transport=transport, sleep=sleeps) as client:
        [gen] = await client.complete(PROMPT, PARAMS, 1)
    assert len(seen) == 2 and gen.ok and gen.attempts == 2


async def test_client_errors_are_not_retried() -> None:
    transport, seen = scripted([status(400, "prompt is too long"), ok_body(1)])
    async with EndpointClient(
        EndpointConfig(base_url="http://127.0.0.1:9", model="m"), transport=transport
    ) as client:
        gens = await client.complete(PROMPT, PARAMS, 1)
    assert len(seen) == 1 and [g.error for g in gens] == ["HTTP 400: prompt is too long"]


async def test_connection_errors_are_retried() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return ok_body(2)(request)

    sleeps = Sleeps()
    async with EndpointClient(
        EndpointConfig(base_url="http://127.0.0.1:9", model="m"),
        transport=httpx.MockTransport(flaky),
        sleep=sleeps,
    ) as client:
        [gen] = await client.complete(PROMPT, PARAMS, 2)
    assert gen.ok and gen.attempts == 2 and gen.texts == ["c0", "c1"] and len(sleeps.waits) == 1


async def test_request_body_carries_sampling_stop_and_key() -> None:
    transport, seen = scripted([ok_body(1)])
    config = EndpointConfig(base_url="http://127.0.0.1:9/", model="m", api_key="sk-1")
    async with EndpointClient(config, transport=transport) as client:
        await client.complete(PROMPT.model_copy(update={"suffix": "\n    return x"}), PARAMS, 1)
    request = seen[0]
    body = httpx.Response(200, content=request.content).json()
    assert str(request.url) == "http://127.0.0.1:9/v1/completions"
    assert request.headers["authorization"] == "Bearer sk-1"
    assert body == {
        "model": "m",
        "n": 1,
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 8,
        "stop": ["\ndef"],
        "prompt": "def f():\n",
        "suffix": "\n    return x",
    }


async def test_at_most_four_stop_sequences_are_sent() -> None:
    transport, seen = scripted([ok_body(1)])
    async with EndpointClient(
        EndpointConfig(base_url="http://127.0.0.1:9", model="m"), transport=transport
    ) as client:
        await client.complete(PROMPT.model_copy(update={"stop": list("abcdefg")}), PARAMS, 1)
    assert httpx.Response(200, content=seen[0].content).json()["stop"] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("code", [401, 404])
async def test_auth_and_unknown_model_end_the_run(code: int) -> None:
    transport, _ = scripted([status(code, "nope")])
    async with EndpointClient(
        EndpointConfig(base_url="http://127.0.0.1:9", model="m"), transport=transport
    ) as client:
        with pytest.raises(FatalEndpointError, match=f"HTTP {code}: nope"):
            await client.complete(PROMPT, PARAMS, 1)


async def test_check_model_names_the_served_models_and_unreachable_hosts() -> None:
    async with MockServer(MockConfig(model_name="served-one")) as url:
        async with EndpointClient(EndpointConfig(base_url=url, model="other")) as client:
            with pytest.raises(FatalEndpointError, match="not served .*served-one"):
                await client.check_model()
        async with EndpointClient(EndpointConfig(base_url=url, model="served-one")) as client:
            await client.check_model()
    async with EndpointClient(
        EndpointConfig(base_url=url, model="m", connect_timeout_s=1)
    ) as client:
        with pytest.raises(FatalEndpointError, match="cannot reach"):
            await client.check_model()


def test_base_url_and_retry_after_parsing() -> None:
    assert normalize_base_url("http://h:1") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalize_base_url("https://h/openai/v1") == "https://h/openai/v1"
    with pytest.raises(CliError, match="http"):
        normalize_base_url("h:1")
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
