"""Correctness under load: the candidates kept for scoring are judged by the eval harness's
sandboxed scorer (`codeserve.scoring.scorer`), so a pass rate can be read beside the latency figures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from codeserve.common.errors import CliError
from codeserve.loadtest.protocol import LoadtestRecord
from codeserve.loadtest.workloads import Workload


def samples_to_score(records: Sequence[LoadtestRecord], workload: Workload) -> list[Any]:
    """(task_id, completion) samples from the measured, successful requests that kept texts.
    Requests whose hole was cut from a whole program (FIM on a non-infill benchmark) are left
    out: their program is not the benchmark's."""
    from codeserve.datasets import Family
    from codeserve.scoring.scorer import Sample

    benchmark = workload.benchmark
    infill = benchmark.family is Family.INFILL
    samples = []
    for r in records:
        if r.warmup or not r.ok or r.task_id is None or (r.fim and not infill):
            continue
        task = benchmark.task(r.task_id)
        for c in r.candidates:
            if c.text is None:
                continue
            completion = (
                c.text
                if workload.prompt_format is None
                else workload.prompt_format.to_completion(c.text, task)
            )
            samples.append(Sample(task_id=r.task_id, completion=completion))
    return samples


async def score_sample(
    records: Sequence[LoadtestRecord], workload: Workload
) -> tuple[int, float | None]:
    """(candidates scored, pass rate)."""
    if workload.benchmark is None:
        raise CliError("--score-fraction needs benchmark prompts (--workload humaneval, mbpp, ...)")
    samples = samples_to_score(records, workload)
    if not samples:
        return 0, None

    def judge() -> int:
        from codeserve.sandbox.pool import SandboxPool
        from codeserve.scoring.scorer import Scorer

        with SandboxPool() as pool:
            report = Scorer(workload.benchmark, pool).score(samples, ks=(1,))
        return sum(v.passed for v in report.verdicts)

    # Sandboxes are CPU work in worker processes; the thread keeps the event loop free.
    passed = await asyncio.to_thread(judge)
    return len(samples), passed / len(samples)
