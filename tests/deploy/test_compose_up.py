"""`docker-compose up` of deploy/compose/compose.local.yaml (marked `docker`): the gateway, two
engines (the mock vLLM server) and Prometheus (Debian's package). Prometheus scrapes the gateway
and both engines, and after traffic a query for a gateway metric returns data."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.deploy.dockerlab import REPO, Docker, build_local, docker, gateway_image, wait_http
from tests.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]

COMPOSE = REPO / "deploy" / "compose" / "compose.local.yaml"


@pytest.fixture(scope="module")
def compose_up(docker: Docker, gateway_image: str) -> Iterator[dict[str, Any]]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    build_local(docker, "prometheus")
    gateway_port, prometheus_port = free_port(), free_port()
    project = docker.name("compose")
    env = dict(
        os.environ,
        CODESERVE_PUBLISH=f"127.0.0.1:{gateway_port}",
        PROMETHEUS_PUBLISH=f"127.0.0.1:{prometheus_port}",
        DOCKER_HOST=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
    )
    base = [binary, "-f", str(COMPOSE), "-p", project]

    def compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=timeout, env=env
        )

    start = time.monotonic()
    up = compose("up", "-d")
    try:
        assert up.returncode == 0, up.stderr
        yield {
            "gateway": f"http://127.0.0.1:{gateway_port}",
            "prometheus": f"http://127.0.0.1:{prometheus_port}",
            "container": f"{project}_gateway_1",
            "started": start,
        }
    finally:
        print(compose("logs", "--tail", "40").stdout)
        compose("down", "-v", "--remove-orphans", timeout=300)


def test_gateway_serves_through_compose(docker: Docker, compose_up: dict[str, Any]) -> None:
    wait_http(compose_up["gateway"] + "/ready", 180, compose_up["container"], docker)
    for model in ("qwen-1.5b", "deepseek-1.3b"):
        response = httpx.post(
            compose_up["gateway"] + "/v1/completions",
            json={"model": model, "prompt": "def f():", "max_tokens": 4},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4
    healthy = docker.wait_healthy(compose_up["container"], timeout=180)
    print(f"compose up to gateway healthy: {time.monotonic() - compose_up['started']:.0f} s")
    assert healthy >= 0


def _prometheus(compose_up: dict[str, Any], path: str, **params: str) -> Any:
    response = httpx.get(compose_up["prometheus"] + path, params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_everything_and_sees_gateway_traffic(
    docker: Docker, compose_up: dict[str, Any]
) -> None:
    wait_http(compose_up["gateway"] + "/ready", 180, compose_up["container"], docker)
    deadline = time.monotonic() + 180
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            targets = _prometheus(compose_up, "/api/v1/targets")["activeTargets"]
        except httpx.HTTPError:
            targets = []
        if len(targets) == 3 and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    summary = {t["scrapeUrl"]: (t["health"], t.get("lastError")) for t in targets}
    assert len(targets) == 3 and all(h == "up" for h, _ in summary.values()), summary
    models = {t["labels"].get("model") for t in targets if t["labels"]["job"] == "vllm"}
    assert models == {"qwen-1.5b", "deepseek-1.3b"}

    for _ in range(5):
        response = httpx.post(
            compose_up["gateway"] + "/v1/completions",
            json={"model": "qwen-1.5b", "prompt": "def g():", "max_tokens": 4},
            timeout=60,
        )
        assert response.status_code == 200, response.text
    query = 'codeserve_requests_total{model="qwen-1.5b",status="200"}'
    deadline = time.monotonic() + 120
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = _prometheus(compose_up, "/api/v1/query", query=query)["result"]
        if result and float(result[0]["value"][1]) >= 5:
            break
        time.sleep(2)
    assert result and float(result[0]["value"][1]) >= 5, result
    # The engines' own series are there too, under the gateway's model names.
    engine = _prometheus(compose_up, "/api/v1/query", query='up{job="vllm"}')["result"]
    assert {r["metric"]["model"] for r in engine} == {"qwen-1.5b", "deepseek-1.3b"}
