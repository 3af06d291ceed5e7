"""The HumanEval infilling benchmarks in the eval harness: the `fim` prompt format, the oracle,
an endpoint that answers the canonical middles, and the real gateway with a demo model."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from codeserve.cli.main import main
from codeserve.client.eval_run import EvalConfig, run_eval
from codeserve.client.protocol import SamplingParams
from codeserve.datasets import load_benchmark
from codeserve.scoring.prompts import resolve_format
from tests.stack import Stack

INFILL = [
    "humaneval-infill-single",
    "humaneval-infill-multi",
    "humaneval-infill-random",
    "humaneval-infill-random-light",
]
LIMIT = 6


@pytest.mark.parametrize("name", INFILL)
def test_fim_is_the_default_format(data_dir: Path, name: str) -> None:
    benchmark = load_benchmark(name, data_dir)
    fmt = resolve_format(None, benchmark, data_dir)
    task = benchmark.tasks[0]
    request = fmt.build(task)
    assert fmt.name == "fim" and request.kind == "completion"
    assert (request.prompt, request.suffix) == (task.prompt, task.suffix)
    single = name == "humaneval-infill-single"
    assert request.stop == (["\n"] if single else [])
    text = "    return x\n    extra()\n"
    assert fmt.to_completion(text, task) == ("    return x\n" if single else text)


@pytest.mark.parametrize("name", INFILL)
async def test_oracle_passes_every_listed_task(data_dir: Path, tmp_path: Path, name: str) -> None:
    outcome = await run_eval(
        EvalConfig(
            benchmark=name,
            model="oracle",
            oracle=True,
            limit=LIMIT,
            out_dir=tmp_path,
            data_dir=data_dir,
            progress=False,
        )
    )
    results = outcome.results
    assert results.complete and len(results.tasks) == LIMIT
    assert results.pass_at_k == {"pass@1": 1.0}


@pytest.mark.parametrize("name", INFILL)
async def test_endpoint_answering_canonical_middles_passes(
    data_dir: Path, tmp_path: Path, name: str
) -> None:
    """The harness sends prefix + suffix and scores what comes back as the middle."""
    benchmark = load_benchmark(name, data_dir)
    middles = {(t.prompt, t.suffix): t.canonical_solution for t in benchmark.tasks[:LIMIT]}
    bodies: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "fim-model"}]})
        body = json.loads(request.content)
        bodies.append(body)
        middle = middles[(body["prompt"], body["suffix"])]
        # A single-line answer runs on past its line; the format cuts it at the newline.
        text = middle.rstrip("\n") + "\nnot_code(" if name.endswith("single") else middle
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "text_completion",
                "created": 0,
                "model": "fim-model",
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    outcome = await run_eval(
        EvalConfig(
            benchmark=name,
            model="fim-model",
            endpoint="http://127.0.0.1:1/v1",
            limit=LIMIT,
            out_dir=tmp_path,
            data_dir=data_dir,
            progress=False,
            max_retries=0,
            sampling=SamplingParams(max_tokens=64),
        ),
        transport=httpx.MockTransport(answer),
    )
    assert outcome.results.pass_at_k == {"pass@1": 1.0}
    assert len(bodies) == LIMIT and all("suffix" in b for b in bodies)


@pytest.mark.vllm
@pytest.mark.parametrize("name", INFILL)
def test_infilling_benchmarks_on_a_demo_model(
    real_stack: Stack, data_dir: Path, tmp_path: Path, name: str
) -> None:
    """Random weights: the pass rate means nothing, every request must succeed."""
    code = main(
        [
            "eval",
            "--endpoint",
            real_stack.gateway_url + "/v1",
            "--model",
            "qwen-demo",
            "-b",
            name,
            "--limit",
            "3",
            "--max-tokens",
            "12",
            "--concurrency",
            "3",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 0, results["errors"]
    assert results["complete"] and results["errors"] == {}
    assert results["metadata"]["identity"]["prompt_format"] == "fim"
    assert 0.0 <= results["pass_at_k"]["pass@1"] <= 1.0
