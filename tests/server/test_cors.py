"""CORS is off unless `cors_origins` is set; `allowed_hosts` refuses other Host headers."""

from __future__ import annotations

import httpx

from codeserve.loadtest.mock_server import MockServer
from tests.server.gateway_harness import running_gateway, upstream_models

ORIGIN = "https://ide.example"
BODY = {"model": "coder", "prompt": "x", "max_tokens": 1}
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_cors_is_off_by_default(engine: MockServer) -> None:
    async with (
        running_gateway(upstream_models({"coder": [engine.url]})) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        preflight = await http.options("/v1/completions", headers=PREFLIGHT)
        post = await http.post("/v1/completions", json=BODY, headers={"Origin": ORIGIN})
    assert preflight.status_code == 405
    assert post.status_code == 200
    for resp in (preflight, post):
        assert not any(h.startswith("access-control-") for h in resp.headers)


async def test_cors_origins_enable_it(engine: MockServer) -> None:
    key = "sk-cors-test-key"
    models = upstream_models({"coder": [engine.url]})
    async with (
        running_gateway(models, cors_origins=[ORIGIN], api_keys=[key]) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        # Browsers send preflights without credentials: answered before the key check.
        preflight = await http.options("/v1/completions", headers=PREFLIGHT)
        stranger = await http.options(
            "/v1/completions", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        post = await http.post(
            "/v1/completions",
            json=BODY,
            headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"},
        )
        refused = await http.post("/v1/completions", json=BODY, headers={"Origin": ORIGIN})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == ORIGIN
    # A refusal carries CORS headers too, so the page can read the error object.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert refused.json()["error"]["code"] == "invalid_api_key"


async def test_allowed_hosts(engine: MockServer) -> None:
    models = upstream_models({"coder": [engine.url]})
    async with (
        running_gateway(models, allowed_hosts=["gw.example", "*.internal"]) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        ok = await http.post("/v1/completions", json=BODY, headers={"Host": "gw.example"})
        wildcard = await http.post(
            "/v1/completions", json=BODY, headers={"Host": "a.b.internal:8000"}
        )
        evil = await http.post("/v1/completions", json=BODY, headers={"Host": "evil.example"})
        suffix = await http.post("/v1/completions", json=BODY, headers={"Host": "xinternal"})
        # Probes answer under any Host: Kubernetes sends the pod IP.
        probes = [
            await http.get(p, headers={"Host": "10.1.2.3:8000"})
            for p in ("/health", "/ready", "/metrics")
        ]
    assert ok.status_code == 200 and wildcard.status_code == 200
    for resp in (evil, suffix):
        assert resp.status_code == 400
        assert resp.json() == {
            "error": {
                "message": "Host header not allowed",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_host",
            }
        }
    assert [p.status_code for p in probes] == [200, 200, 200]
    assert engine.stats.received == 2
