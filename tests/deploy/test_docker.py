"""The images, built and run by a real Docker engine (marked `docker`: not in the default run).

The gateway image in front of a mock vLLM container (the same image running the mock upstream):
reachable through a published port, Docker's HEALTHCHECK turns healthy, it runs as user 10001 with
the read-only root filesystem deploy/compose gives it, and SIGTERM drains a request in flight.
The CPU image runs a managed vLLM engine on a model mounted read-only and completes a request."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.dockerlab import (
    Docker,
    build_local,
    cpu_image,
    docker,
    gateway_image,
    readable,
    wait_http,
)
from tests.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
ITL_MS = 50  # the mock's delay between tokens: 100 tokens take 5 s


def _compose_gateway() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    service: dict[str, Any] = compose["services"]["gateway"]
    return service


def _run_flags_of_compose() -> list[str]:
    """What deploy/compose says about the gateway's filesystem, as `docker run` flags."""
    service = _compose_gateway()
    flags = ["--read-only"] if service.get("read_only") else []
    for mount in service.get("tmpfs", []):
        flags += ["--tmpfs", mount]
    return flags


def test_gateway_image_is_small_and_unprivileged(docker: Docker, gateway_image: str) -> None:
    assert docker.out("image", "inspect", "-f", "{{.Config.User}}", gateway_image) == "codeserve"
    uid = docker.out("run", "--rm", "--entrypoint", "id", gateway_image, "-u")
    assert uid == "10001"
    help_text = docker.out("run", "--rm", gateway_image, "--help")
    assert "serve" in help_text
    size = docker.image_size_mb(gateway_image)
    print(f"{gateway_image}: {size:.0f} MB")
    assert size < 1500, f"the gateway image (no engine) is {size:.0f} MB"


@pytest.fixture(scope="module")
def stack(
    docker: Docker, gateway_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """mock engine container + gateway container on one network; only the gateway is published."""
    root = tmp_path_factory.mktemp("docker-stack")
    models = root / "models.yaml"
    models.write_text(
        "models:\n"
        "  - name: mock\n"
        "    model: mock-model\n"
        "    fim: none\n"
        '    engine: {kind: upstream, urls: ["http://engine:8000"]}\n'
    )
    readable(models)
    port = free_port()
    with docker.network("net") as net:
        with docker.container(
            "engine",
            "--network", net, "--network-alias", "engine",
            "--entrypoint", "python",
            gateway_image,
            "-m", "codeserve.loadtest.mock_server",
            "--host", "0.0.0.0", "--port", "8000", "--itl-ms", str(ITL_MS),
        ):  # fmt: skip
            start = time.monotonic()
            with docker.container(
                "gateway",
                "--network", net,
                "-p", f"127.0.0.1:{port}:8080",
                "-v", f"{models}:/etc/codeserve/models.yaml:ro",
                "-e", "CODESERVE_MODELS_FILE=/etc/codeserve/models.yaml",
                "-e", "CODESERVE_SHUTDOWN_GRACE_S=30",
                *_run_flags_of_compose(),
                gateway_image,
            ) as gateway:  # fmt: skip
                yield {
                    "url": f"http://127.0.0.1:{port}",
                    "gateway": gateway,
                    "started": start,
                }


def test_healthcheck_turns_healthy(docker: Docker, stack: dict[str, Any]) -> None:
    docker.wait_healthy(stack["gateway"], timeout=180)
    elapsed = time.monotonic() - stack["started"]
    print(f"gateway container start to healthy: {elapsed:.1f} s (load {os.getloadavg()})")
    log = docker.out(
        "inspect", "-f", "{{range .State.Health.Log}}{{.ExitCode}} {{end}}", stack["gateway"]
    )
    assert log.split()[-1] == "0"


def test_completion_through_the_published_port(docker: Docker, stack: dict[str, Any]) -> None:
    wait_http(stack["url"] + "/ready", 120, stack["gateway"], docker)
    response = httpx.post(
        stack["url"] + "/v1/completions",
        json={"model": "mock", "prompt": "def add(a, b):", "max_tokens": 8},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mock"
    assert body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] == 8
    metrics = httpx.get(stack["url"] + "/metrics", timeout=10).text
    assert 'codeserve_requests_total{model="mock",status="200"}' in metrics


def test_runs_as_non_root_on_a_read_only_root(docker: Docker, stack: dict[str, Any]) -> None:
    gateway = stack["gateway"]
    assert _compose_gateway().get("read_only") is True, "deploy/compose no longer says read_only"
    assert docker.out("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", gateway) == "true"
    assert docker.out("exec", gateway, "id", "-u") == "10001"
    for path in ("/opt/codeserve/venv/x", "/home/codeserve/x", "/x"):
        result = docker.run("exec", gateway, "python", "-c", f"open({path!r}, 'w')", check=False)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, path
    # Scratch space is the tmpfs compose declares.
    docker.out("exec", gateway, "python", "-c", "open('/tmp/x', 'w').write('ok')")


def test_sigterm_drains_the_request_in_flight(docker: Docker, stack: dict[str, Any]) -> None:
    """Last in this module: it stops the gateway."""
    gateway, url = stack["gateway"], stack["url"]
    wait_http(url + "/ready", 120, gateway, docker)
    result: dict[str, Any] = {}

    def long_request() -> None:
        try:
            result["response"] = httpx.post(
                url + "/v1/completions",
                json={"model": "mock", "prompt": "def f():", "max_tokens": 100},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(1.5)  # the request is in flight (100 tokens x 50 ms)
    assert "response" not in result and "error" not in result
    docker.out("kill", "--signal", "TERM", gateway)
    time.sleep(0.5)
    # Draining: new requests are turned away while the one in flight runs to its end.
    try:
        late = httpx.post(
            url + "/v1/completions",
            json={"model": "mock", "prompt": "x", "max_tokens": 1},
            timeout=10,
        )
        assert late.status_code == 503, late.text
    except httpx.TransportError:
        pass  # the listener may already be closed: refused is also "turned away"
    thread.join(timeout=60)
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 100
    exit_code = docker.out("wait", gateway, timeout=60)
    assert exit_code == "0", docker.logs(gateway)


def test_gateway_image_builds_from_a_wheelhouse_alone(
    docker: Docker, gateway_image: str, tmp_path: Path
) -> None:
    """The air-gapped recipe: wheels fetched beforehand (here by the host's pip), then a build
    in which pip reaches no index at all (PIP_NO_INDEX=1). apt still uses the Debian mirror."""
    wheels = tmp_path / "wheels"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), str(REPO)]
        + ["setuptools>=68", "wheel"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if fetched.returncode != 0:
        pytest.skip(f"cannot fill a wheelhouse here (no package index?):\n{fetched.stderr[-2000:]}")
    repository = docker.name("offline")
    try:
        build_local(
            docker,
            "gateway",
            env={"PIP_NO_INDEX": "1", "WHEELS": str(wheels), "REPOSITORY": repository},
        )
        image = f"{repository}:gateway"
        assert "serve" in docker.out("run", "--rm", image, "--help")
        version = docker.out(
            "run", "--rm", "--entrypoint", "python", image, "-c",
            "import importlib.metadata as m; print(m.version('codeserve'))",
        )  # fmt: skip
        assert version == importlib.metadata.version("codeserve")
    finally:
        docker.run("image", "rm", "-f", f"{repository}:gateway", check=False)


def test_cpu_image_runs_a_managed_engine_on_a_read_only_model(
    docker: Docker, cpu_image: str, demo_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    name, model_dir = next(iter(demo_model_dirs.items()))
    readable(model_dir)
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        f"  - name: {name}\n"
        f"    model: /models/{name}\n"
        "    engine:\n"
        "      kind: managed\n"
        "      dtype: float32\n"
        "      max_model_len: 2048\n"
        "      enforce_eager: true\n"
        "      env: {VLLM_CPU_KVCACHE_SPACE: '1'}\n"
    )
    readable(models)
    port = free_port()
    size = docker.image_size_mb(cpu_image)
    print(f"{cpu_image}: {size:.0f} MB")
    start = time.monotonic()
    with docker.container(
        "cpu",
        "-p", f"127.0.0.1:{port}:8080",
        "--shm-size", "1g",
        "-v", f"{model_dir}:/models/{name}:ro",
        "-v", f"{models}:/etc/codeserve/models.yaml:ro",
        "-e", "CODESERVE_MODELS_FILE=/etc/codeserve/models.yaml",
        cpu_image,
    ) as container:  # fmt: skip
        ready_s = wait_http(f"http://127.0.0.1:{port}/ready", 1200, container, docker)
        print(f"cpu container start to /ready: {ready_s:.0f} s (load {os.getloadavg()})")
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": name, "prompt": "def add(a, b):", "max_tokens": 8},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] >= 1
        # The model really is mounted read-only.
        probe = docker.run(
            "exec", container, "python", "-c", f"open('/models/{name}/x', 'w')", check=False
        )
        assert "Read-only file system" in probe.stderr
        docker.wait_healthy(container, timeout=120)
    print(f"cpu container total: {time.monotonic() - start:.0f} s")
