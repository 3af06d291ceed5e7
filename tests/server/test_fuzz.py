"""Schemathesis against the gateway's own OpenAPI schema (served at /openapi.json), with a mock
engine behind it: no 5xx, no response breaking the documented schema (status codes, content
types, headers, bodies), and every schema-violating request refused. Runs every phase the schema
allows (coverage, fuzzing) with bounded examples: well under a minute.

`positive_data_acceptance` is left out on purpose: limits that span fields (n x prompts, prompt
tokens + max_tokens against the context, min_tokens <= max_tokens) cannot be written in JSON
Schema, so some schema-valid requests are rightly refused with 400.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerProcess
from tests.server.gateway_process import GatewayProcess, gateway_process

MAX_EXAMPLES = 40
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # Small limits keep every generated request cheap for the mock (the fuzzer loves n=128).
    mock = MockServerProcess(MockConfig(model_name="coder", output_tokens=2))
    with (
        mock as mock_url,
        gateway_process(
            tmp_path_factory.mktemp("fuzz"),
            {"coder": mock_url},
            CODESERVE_MAX_N="4",
            CODESERVE_MAX_TOKENS_LIMIT="64",
        ) as gateway,
    ):
        yield gateway


def _fuzz(gateway: GatewayProcess, tmp_path: Path, *selection: str) -> None:
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            gateway.url + "/openapi.json",
            *selection,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--exclude-checks",
            "positive_data_acceptance",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    assert "Operations:       " in run.stdout and " 0 selected" not in run.stdout
    # The fuzzer never made the gateway crash or log a traceback, and it is still serving.
    assert httpx.get(gateway.url + "/ready").status_code == 200
    assert "Traceback" not in gateway.log(), gateway.log()[-5000:]


def test_gateway_honours_its_own_schema(fuzz_gateway: GatewayProcess, tmp_path: Path) -> None:
    _fuzz(fuzz_gateway, tmp_path)


def test_scoring_endpoint_honours_the_schema_when_enabled(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tmp_path: Path
) -> None:
    """/v1/score with scoring on: every fuzzed body runs through validation and, when valid,
    the real sandbox (small limits keep that cheap)."""
    mock = MockServerProcess(MockConfig(model_name="coder", output_tokens=2))
    with (
        mock as mock_url,
        gateway_process(
            tmp_path_factory.mktemp("fuzz-score"),
            {"coder": mock_url},
            CODESERVE_SCORING_ENABLED="1",
            CODESERVE_DATA_DIR=str(data_dir),
            CODESERVE_SCORING_MAX_COMPLETIONS="3",
            CODESERVE_SCORING_MAX_COMPLETION_CHARS="400",
        ) as gateway,
    ):
        _fuzz(gateway, tmp_path, "--include-path", "/v1/score")
        # Scoring really was on, and the sandbox still judges after the fuzzing.
        reply = httpx.post(
            gateway.url + "/v1/score",
            timeout=30,
            json={
                "benchmark": "humaneval",
                "task_id": "HumanEval/0",
                "completions": ["    return []\n"],
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["verdicts"][0]["status"] == "failed"
