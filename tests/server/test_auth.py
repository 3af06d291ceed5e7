"""API keys: every route but the probes needs one, path tricks never get around the check, and
neither keys nor prompts reach the gateway's log."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from codeserve.common.errors import ConfigError
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer, MockServerThread
from codeserve.server import auth
from codeserve.server.app import create_app
from codeserve.server.config import Settings
from tests.server.gateway_harness import running_gateway, upstream_models
from tests.server.gateway_process import gateway_process, raw_request

KEY = "sk-test-4f1c2a9b7d3e4a5f"
OTHER_KEY = "sk-other-0a1b2c3d4e5f6a7b"
BODY = {"model": "coder", "prompt": "def f():", "max_tokens": 2}
UNAUTHORIZED = {
    "error": {
        "message": "missing or invalid API key (send 'Authorization: Bearer <key>')",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_every_route_but_the_probes_needs_a_key(engine: MockServer) -> None:
    models = upstream_models({"coder": [engine.url]})
    async with (
        running_gateway(models, api_keys=[KEY, OTHER_KEY]) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        guarded = [
            ("POST", "/v1/completions"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("POST", "/v1/score"),
            ("GET", "/openapi.json"),
            ("GET", "/no/such/route"),
        ]
        for method, path in guarded:
            resp = await http.request(method, path, json=BODY)
            assert resp.status_code == 401, (path, resp.text)
            assert resp.json() == UNAUTHORIZED
            assert resp.headers["www-authenticate"] == "Bearer"
        for path in ("/health", "/ready", "/metrics"):
            assert (await http.get(path)).status_code == 200, path
        assert engine.stats.received == 0

        for key in (KEY, OTHER_KEY):
            ok = await http.post("/v1/completions", json=BODY, headers=bearer(key))
            assert ok.status_code == 200, ok.text
        lower_scheme = await http.post(
            "/v1/completions", json=BODY, headers={"Authorization": f"bearer {KEY}"}
        )
        assert lower_scheme.status_code == 200  # the scheme is case-insensitive (RFC 7235)
        assert (await http.get("/v1/models", headers=bearer(KEY))).status_code == 200
    assert engine.stats.received == 3


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {KEY[:-1]}",
        f"Bearer {KEY}x",
        f"Bearer {KEY.upper()}",
        f"Basic {KEY}",
        KEY,
        "Bearer",
        f"Bearer {KEY},{OTHER_KEY}",
        f"Token {KEY}",
    ],
)
async def test_wrong_keys_are_refused(engine: MockServer, authorization: str) -> None:
    async with running_gateway(upstream_models({"coder": [engine.url]}), api_keys=[KEY]) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            resp = await http.post(
                "/v1/completions", json=BODY, headers={"Authorization": authorization}
            )
    assert resp.status_code == 401
    assert resp.json() == UNAUTHORIZED
    assert engine.stats.received == 0


@pytest.mark.parametrize(
    "target",
    [
        "//v1/completions",
        "/v1//completions",
        "/v1/completions/",
        "/V1/completions",
        "/v1%2Fcompletions",
        "/v1/completions%2F",
        "/./v1/completions",
        "/v1/./completions",
        "/health/../v1/completions",
        "/health%2F..%2Fv1%2Fcompletions",
        "/ready/..%2Fv1/completions",
        "/health/%2e%2e/v1/completions",
        "/metrics/../v1/completions",
        "/health/",
        "/HEALTH",
        "/Ready",
        "/health;x",
        "/health%00",
        "/%761/completions",
        "http://127.0.0.1/v1/completions",
    ],
)
async def test_path_tricks_never_bypass_the_check(engine: MockServer, target: str) -> None:
    async with running_gateway(upstream_models({"coder": [engine.url]}), api_keys=[KEY]) as url:
        body = orjson.dumps(BODY)
        status, answer = await raw_request(url, f"POST {target} HTTP/1.1", body=body)
        assert status == 401, (target, answer)
        assert orjson.loads(answer) == UNAUTHORIZED
        # The same raw client with the key gets through: the refusal above is the key check.
        status, _ = await raw_request(url, "POST /v1/completions HTTP/1.1", bearer(KEY), body)
        assert status == 200
    assert engine.stats.received == 1


async def test_keys_file_and_metrics_auth(engine: MockServer, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# one key per line\n\n  {OTHER_KEY}  \n# {KEY}\n")
    models = upstream_models({"coder": [engine.url]})
    async with (
        running_gateway(
            models, api_keys=[], api_keys_file=keys_file, metrics_require_auth=True
        ) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (
            await http.post("/v1/completions", json=BODY, headers=bearer(OTHER_KEY))
        ).status_code == 200
        commented = await http.post("/v1/completions", json=BODY, headers=bearer(KEY))
        assert commented.status_code == 401
        metrics = await http.get("/metrics")
        assert metrics.status_code == 401 and metrics.json() == UNAUTHORIZED
        assert (await http.get("/metrics", headers=bearer(OTHER_KEY))).status_code == 200
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 200


def test_unreadable_keys_file_stops_start_up(tmp_path: Path) -> None:
    settings = Settings(api_keys_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="cannot read API keys file"):
        create_app(settings, upstream_models({"coder": ["http://127.0.0.1:9"]}))


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: timing must not tell which key (or whether any) nearly matched."""
    calls: list[bytes] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = [b"first-key", b"second-key", b"third-key"]
    assert auth.key_matches(b"first-key", keys)
    assert not auth.key_matches(b"first-kex", keys)
    assert calls == keys + keys


def test_no_keys_or_prompts_in_the_log_at_the_default_level(tmp_path: Path) -> None:
    secret_prompt = "def leaked_prompt_marker_7e1f():"
    wrong_key = "sk-wrong-marker-55aa66bb"
    mock = MockServerThread(MockConfig())
    with (
        mock as mock_url,
        gateway_process(tmp_path, {"coder": mock_url}, CODESERVE_API_KEYS=KEY) as gateway,
    ):
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            good = {**BODY, "prompt": secret_prompt}
            assert http.post("/v1/completions", json=good, headers=bearer(KEY)).status_code == 200
            stream = http.post(
                "/v1/completions", json={**good, "stream": True}, headers=bearer(KEY)
            )
            assert stream.status_code == 200
            assert (
                http.post("/v1/completions", json=good, headers=bearer(wrong_key)).status_code
                == 401
            )
            invalid = http.post("/v1/completions", json={**good, "n": 0}, headers=bearer(KEY))
            assert invalid.status_code == 400
            mock.patch(fail_rate=1.0, fail_status=500)
            failed = http.post("/v1/completions", json=good, headers=bearer(KEY))
            assert failed.status_code == 502
    log = gateway.log()
    assert "Uvicorn running" in log or "Application startup complete" in log, log
    for secret in (KEY, wrong_key, secret_prompt, "leaked_prompt_marker"):
        assert secret not in log, f"{secret!r} appears in the gateway log"
