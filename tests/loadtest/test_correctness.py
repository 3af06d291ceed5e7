"""Correctness under load: sampled candidates are scored in the sandbox, pass rate beside latency."""

from __future__ import annotations

from pathlib import Path

from codeserve.datasets import load_benchmark
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.loadtest.protocol import ArrivalSpec, RunSpec, WorkloadSpec
from codeserve.loadtest.sweep import run_once
from codeserve.loadtest.workloads import build_workload


async def _pass_rate(answer: str, data_dir: Path) -> tuple[int, float | None]:
    async with MockServer(MockConfig(completion_text=answer, itl_ms=1)) as url:
        spec = RunSpec(
            base_url=url + "/v1",
            model="m",
            arrival=ArrivalSpec(mode="closed", concurrency=2),
            num_requests=4,
            score_fraction=1.0,
            workload=WorkloadSpec(source="humaneval", max_tasks=1, n=2, max_tokens=300),
        )
        result = await run_once(spec, build_workload(spec.workload, "m", 0, data_dir))
    return result.summary.scored, result.summary.pass_rate


async def test_pass_rate_of_scored_candidates(data_dir: Path) -> None:
    right = load_benchmark("humaneval", data_dir).task("HumanEval/0").canonical_solution
    assert await _pass_rate(right, data_dir) == (8, 1.0)
    assert await _pass_rate("    return None\n", data_dir) == (8, 0.0)
