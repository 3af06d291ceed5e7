"""The scoring API: sync reports, the async service the server calls, typed errors, Plus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.common.errors import InvalidInputError
from codeserve.datasets import UnknownBenchmarkError, UnknownTaskError, load_benchmark
from codeserve.sandbox.pool import RunResult, SandboxPool, SandboxSettings
from codeserve.scoring.plus_oracle import PlusSettings
from codeserve.scoring.scorer import Sample, Scorer, ScoringService, merge_parts, score_completions


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(SandboxSettings(workers=2)) as p:
        yield p


def test_report_counts_and_pass_at_k(data_dir: Path, pool: SandboxPool) -> None:
    b = load_benchmark("humaneval", data_dir)
    t0, t1 = b.tasks[:2]
    samples = [
        Sample(task_id=t0.task_id, completion=t0.canonical_solution),
        Sample(task_id=t0.task_id, completion="    return None\n"),
        Sample(task_id=t1.task_id, completion=t1.canonical_solution),
        Sample(task_id=t1.task_id, completion="    while True:\n        pass\n"),
    ]
    report = Scorer(b, pool, timeout_s=1.0).score(samples, ks=[1, 2, 5])
    assert [v.status for v in report.verdicts] == ["passed", "failed", "passed", "timeout"]
    assert [v.completion_id for v in report.verdicts] == [0, 1, 0, 1]
    assert report.pass_at_k == {"pass@1": 0.5, "pass@2": 1.0}
    assert report.status_counts == {"passed": 2, "failed": 1, "timeout": 1}
    assert {t.task_id: t.correct for t in report.tasks} == {t0.task_id: 1, t1.task_id: 1}
    assert report.isolation and report.dataset_sha256 == b.sha256


def test_unknown_task_is_a_typed_error(data_dir: Path, pool: SandboxPool) -> None:
    scorer = Scorer(load_benchmark("humaneval", data_dir), pool)
    with pytest.raises(UnknownTaskError):
        scorer.score([Sample(task_id="HumanEval/999", completion="")])


def test_plus_reports_base_and_plus(data_dir: Path, pool: SandboxPool, tmp_path: Path) -> None:
    b = load_benchmark("humaneval+mini", data_dir)
    b.tasks = [t for t in b.tasks if t.task_id in ("HumanEval/0", "HumanEval/2")]
    b.__post_init__()
    scorer = Scorer(b, pool, PlusSettings(cache_dir=tmp_path))
    t0 = b.task("HumanEval/0")
    # right on the original tests (at most 6 numbers each), wrong on longer extra inputs
    sloppy = "    if len(numbers) > 6:\n        return False\n" + t0.canonical_solution
    report = scorer.score(
        [
            Sample(task_id=t0.task_id, completion=t0.canonical_solution),
            Sample(task_id=t0.task_id, completion=sloppy),
            Sample(task_id="HumanEval/2", completion="    return number % 1.0\n"),
        ],
        ks=[1],
    )
    by_completion = {(v.task_id, v.completion_id): v for v in report.verdicts}
    assert by_completion[("HumanEval/0", 0)].passed
    sloppy_verdict = by_completion[("HumanEval/0", 1)]
    assert sloppy_verdict.status == "failed" and sloppy_verdict.base_passed is True
    assert "plus input" in sloppy_verdict.detail
    assert by_completion[("HumanEval/2", 0)].passed  # floats compared with tolerance
    assert report.base_pass_at_k is not None
    assert list(tmp_path.glob("*.meta.json"))  # expected outputs cached


def test_merge_parts_keeps_the_first_failure() -> None:
    ok = RunResult(status="passed", elapsed_s=1.0)
    bad = RunResult(status="failed", detail="plus input 7", input_index=9, elapsed_s=0.5)
    slow = RunResult(status="timeout", elapsed_s=2.0)
    assert merge_parts([ok, ok]).passed and merge_parts([ok, ok]).elapsed_s == 2.0
    merged = merge_parts([ok, bad, slow])
    assert merged.status == "failed" and merged.input_index == 9 and merged.elapsed_s == 3.5


def test_async_service(data_dir: Path) -> None:
    service = ScoringService(data_dir, sandbox_settings=SandboxSettings(workers=2))

    async def main() -> None:
        t = load_benchmark("humaneval", data_dir).task("HumanEval/3")
        result = await score_completions(
            "humaneval",
            t.task_id,
            [t.canonical_solution, "    return 1\n"] * 3,
            service=service,
            ks=[1, 5, 10],
        )
        assert result.n == 6 and result.correct == 3
        assert set(result.pass_at_k) == {"pass@1", "pass@5"}
        assert [v.passed for v in result.verdicts] == [True, False] * 3
        both = await asyncio.gather(
            service.score_completions("humaneval", t.task_id, [t.canonical_solution]),
            service.score_completions(
                "mbpp", "Mbpp/11", ["def remove_Occ(s, ch):\n    return s\n"]
            ),
        )
        assert [r.correct for r in both] == [1, 0]
        with pytest.raises(UnknownBenchmarkError):
            await service.score_completions("nope", "x", ["pass"])
        with pytest.raises(UnknownTaskError):
            await service.score_completions("humaneval", "HumanEval/999", ["pass"])
        with pytest.raises(InvalidInputError):
            await service.score_completions("humaneval", t.task_id, [])

    try:
        asyncio.run(main())
    finally:
        service.close()
