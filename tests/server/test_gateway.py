"""Gateway behaviour over real HTTP, with mock engines at the engine seam (no vLLM)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from codeserve.common.sse import data_of
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.server.config import Settings
from tests.server.gateway_harness import running_gateway, upstream_models


def sse_events(text: str) -> list[str]:
    return [data.decode() for data in data_of(text.encode())]


@pytest.fixture
async def engine() -> MockServer:
    server = MockServer(MockConfig(model_name="engine-name"))
    await server.start()
    yield server
    await server.stop()


async def test_relays_completion_with_public_model_name(engine: MockServer) -> None:
    models = upstream_models({"coder": [engine.url]}, coder="engine-name")
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.post(
            "/v1/completions",
            json={
                "model": "coder",
                "prompt": "def f():",
                "n": 3,
                "max_tokens": 4,
                "some_unknown_field": 1,
            },
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == "coder"
        assert sorted(c["index"] for c in body["choices"]) == [0, 1, 2]
        assert body["usage"]["completion_tokens"] == 12
        metrics = (await http.get("/metrics")).text
        assert 'codeserve_requests_total{model="coder",status="200"} 1.0' in metrics
        assert 'codeserve_candidates_total{model="coder"} 3.0' in metrics
        assert 'codeserve_completion_tokens_total{model="coder"} 12.0' in metrics


async def test_stream_drops_usage_chunk_unless_asked(engine: MockServer) -> None:
    models = upstream_models({"coder": [engine.url]}, coder="engine-name")
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"model": "coder", "prompt": "x", "max_tokens": 5, "n": 2, "stream": True}
        plain = sse_events((await http.post("/v1/completions", json=body)).text)
        assert plain[-1] == "[DONE]"
        assert len(plain) == 2 * 5 + 1
        assert all('"usage"' not in e for e in plain)
        assert all('"model":"coder"' in e for e in plain[:-1])

        body["stream_options"] = {"include_usage": True}
        with_usage = sse_events((await http.post("/v1/completions", json=body)).text)
        assert '"completion_tokens":10' in with_usage[-2]
        metrics = (await http.get("/metrics")).text
        # Usage is counted for both streams, including the one whose usage chunk was dropped.
        assert 'codeserve_completion_tokens_total{model="coder"} 20.0' in metrics
        assert 'codeserve_time_to_first_token_seconds_count{model="coder"} 2.0' in metrics


async def test_chat_completions_are_routed(engine: MockServer) -> None:
    async with running_gateway(upstream_models({"chat": [engine.url]})) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "chat",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 3,
                },
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "coder", "prompt": "x", "n": 0}, "n"),
        ({"model": "coder", "prompt": ""}, "prompt"),
        ({"model": "coder", "prompt": "x", "temperature": 3}, "temperature"),
        ({"model": "coder", "prompt": "x", "stop": ["a", ""]}, "stop"),
        ({"model": "coder", "prompt": "x", "n": 500}, "n"),
        ({"model": "coder", "prompt": "x", "max_tokens": 10**6}, "max_tokens"),
        ({"model": "coder", "prompt": "x", "stop": [str(i) for i in range(40)]}, "stop"),
        ({"model": "coder", "prompt": "x", "logprobs": 50}, "logprobs"),
        ({"model": "coder", "prompt": "x", "suffix": "y"}, "suffix"),
    ],
)
async def test_invalid_requests_name_the_field(engine: MockServer, body: dict, param: str) -> None:
    async with running_gateway(upstream_models({"coder": [engine.url]})) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            resp = await http.post("/v1/completions", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(param), error
    assert engine.stats.received == 0  # nothing reached the engine


async def test_malformed_and_oversized_bodies(engine: MockServer) -> None:
    models = upstream_models({"coder": [engine.url]})
    async with running_gateway(models, max_body_bytes=1000) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            bad_json = await http.post(
                "/v1/completions", content=b"{nope", headers={"content-type": "application/json"}
            )
            empty = await http.post("/v1/completions", content=b"")
            huge = await http.post("/v1/completions", json={"model": "coder", "prompt": "x" * 5000})
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


async def test_unknown_model_and_unknown_route(engine: MockServer) -> None:
    async with running_gateway(upstream_models({"coder": [engine.url]})) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            resp = await http.post("/v1/completions", json={"model": "nope", "prompt": "x"})
            route = await http.get("/v2/nothing")
            ready = await http.get("/ready", params={"model": "nope"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"
    assert "coder" in resp.json()["error"]["message"]
    assert route.status_code == 404 and route.json()["error"]["code"] == "not_found"
    assert ready.status_code == 404


async def test_engine_errors_are_mapped(engine: MockServer) -> None:
    async with running_gateway(upstream_models({"coder": [engine.url]}), read_timeout_s=0.5) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            body = {"model": "coder", "prompt": "x", "max_tokens": 2}
            engine.upstream.apply_patch({"fail_rate": 1.0, "fail_status": 500})
            server_error = await http.post("/v1/completions", json=body)
            engine.upstream.apply_patch({"fail_rate": 1.0, "fail_status": 400})
            client_error = await http.post("/v1/completions", json=body)
            engine.upstream.apply_patch({"fail_rate": 0.0, "hang_rate": 1.0})
            timeout = await http.post("/v1/completions", json=body)
    assert server_error.status_code == 502
    assert server_error.json()["error"]["type"] == "upstream_error"
    assert client_error.status_code == 400
    assert timeout.status_code == 504
    assert timeout.json()["error"]["code"] == "engine_timeout"


async def test_engine_dying_mid_stream_ends_with_error_event(engine: MockServer) -> None:
    engine.upstream.apply_patch({"die_rate": 1.0, "die_after_tokens": 2})
    async with running_gateway(upstream_models({"coder": [engine.url]})) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            resp = await http.post(
                "/v1/completions",
                json={"model": "coder", "prompt": "x", "max_tokens": 8, "stream": True},
            )
    events = sse_events(resp.text)
    assert resp.status_code == 200
    assert '"engine_stream_error"' in events[-2]
    assert events[-1] == "[DONE]"


async def test_unreachable_engine_is_not_ready_503() -> None:
    from tests.stack import free_port

    models = upstream_models({"coder": [f"http://127.0.0.1:{free_port()}"]})
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/v1/completions", json={"model": "coder", "prompt": "x"})
        ready = await http.get("/ready")
        listing = (await http.get("/v1/models")).json()
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert resp.json()["error"]["code"] == "model_not_ready"
    assert ready.status_code == 503 and ready.json()["models"] == {"coder": "starting"}
    assert listing["data"][0]["state"] == "starting"


async def test_balances_replicas_and_fails_over() -> None:
    slow = MockConfig(ttft_ms=200, itl_ms=0)
    a, b = MockServer(slow), MockServer(slow)
    await a.start()
    await b.start()
    try:
        models = upstream_models({"coder": [a.url, b.url]})
        async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
            body = {"model": "coder", "prompt": "x", "max_tokens": 1}
            results = await asyncio.gather(
                *(http.post("/v1/completions", json=body) for _ in range(6))
            )
            assert all(r.status_code == 200 for r in results)
            assert a.stats.received == 3 and b.stats.received == 3  # fewest in flight
            await b.stop()
            after = [await http.post("/v1/completions", json=body) for _ in range(4)]
            assert all(r.status_code == 200 for r in after), [r.text for r in after]
            assert a.stats.received == 7
    finally:
        await a.stop()
        await b.stop()


async def test_a_replica_down_makes_the_model_degraded_not_unready() -> None:
    """Two upstream replicas, one stops: the model is "degraded" (in /ready, /v1/models and
    the state gauge), /ready stays 200 and the other replica serves; back to "ready" once the
    stopped one answers again."""
    a, b = MockServer(MockConfig()), MockServer(MockConfig())
    await a.start()
    await b.start()
    port_b = int(b.url.rsplit(":", 1)[1])

    async def state_becomes(http: httpx.AsyncClient, wanted: str) -> httpx.Response:
        for _ in range(100):
            ready = await http.get("/ready")
            if ready.json()["models"]["coder"] == wanted:
                return ready
            await asyncio.sleep(0.1)
        raise AssertionError(f"the model never became {wanted}: {ready.json()}")

    try:
        models = upstream_models({"coder": [a.url, b.url]})
        async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await state_becomes(http, "ready")).status_code == 200
            await b.stop()
            degraded = await state_becomes(http, "degraded")
            body = {"model": "coder", "prompt": "x", "max_tokens": 2}
            served = [await http.post("/v1/completions", json=body) for _ in range(3)]
            listing = (await http.get("/v1/models")).json()
            metrics = (await http.get("/metrics")).text
            b = MockServer(MockConfig(port=port_b))
            await b.start()
            back = await state_becomes(http, "ready")
        assert degraded.status_code == 200 and degraded.json()["ready"] is True
        assert [r.status_code for r in served] == [200, 200, 200]
        assert listing["data"][0]["state"] == "degraded"
        assert 'codeserve_engine_state{model="coder",state="degraded"} 1.0' in metrics
        assert back.status_code == 200
    finally:
        await a.stop()
        await b.stop()


def test_settings_split_comma_lists() -> None:
    settings = Settings(api_keys="a, b", cors_origins="")
    assert settings.api_keys == ["a", "b"] and settings.cors_origins == []


async def test_discovery_spreads_over_every_address_of_a_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`discover: true`: a name with two addresses (like a headless Service with two pods)
    becomes two replicas, both of which get traffic."""
    import socket

    from codeserve.server import discovery
    from codeserve.server.config import ModelsFile

    first = MockServer(MockConfig(host="127.0.0.1"))
    await first.start()
    port = int(first.url.rsplit(":", 1)[1])
    second = MockServer(MockConfig(host="127.0.0.2", port=port))
    await second.start()

    async def fake_dns(host: str, port: int) -> list:
        assert host == "engines.test"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ("127.0.0.1", "127.0.0.2")
        ]

    monkeypatch.setattr(discovery, "_loop_getaddrinfo", fake_dns)
    models = ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": "coder",
                    "model": "org/coder",
                    "engine": {
                        "kind": "upstream",
                        "urls": [f"http://engines.test:{port}"],
                        "discover": True,
                        "discover_interval_s": 0.2,
                    },
                }
            ]
        }
    )
    try:
        async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
            body = {"model": "coder", "prompt": "x", "max_tokens": 1}
            for _ in range(6):
                assert (await http.post("/v1/completions", json=body)).status_code == 200
        assert first.stats.received > 0 and second.stats.received > 0
        assert first.stats.received + second.stats.received == 6
    finally:
        await first.stop()
        await second.stop()
