"""Run a spec once, or sweep open-loop rates to find the highest one that meets the SLOs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from codeserve.common.errors import CliError
from codeserve.loadtest.correctness import score_sample
from codeserve.loadtest.metrics import summarize, timeline
from codeserve.loadtest.protocol import (
    LoadtestResult,
    RunResult,
    RunSpec,
    SloSpec,
    Summary,
    SweepPoint,
    SweepResult,
)
from codeserve.loadtest.runner import LoadRunner
from codeserve.loadtest.workloads import Workload

RunFn = Callable[[RunSpec], Awaitable[RunResult]]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def run_once(
    spec: RunSpec,
    workload: Workload,
    keep_records: bool = False,
    runner_hook: Callable[[LoadRunner], None] | None = None,
) -> RunResult:
    runner = LoadRunner(spec, workload)
    if runner_hook is not None:
        runner_hook(runner)
    records = await runner.run()
    summary = summarize(records, spec)
    if spec.score_fraction > 0:
        summary.scored, summary.pass_rate = await score_sample(records, workload)
    return RunResult(
        spec=spec,
        summary=summary,
        timeline=timeline(records),
        records=records if keep_records else None,
    )


def meets(summary: Summary, slo: SloSpec) -> bool:
    return summary.requests > 0 and (summary.slo_attainment or 0.0) >= slo.attainment


def auto_rates(
    start: float, ceiling: float, max_runs: int
) -> Callable[[list[SweepPoint]], float | None]:
    """Next rate to try: double from `start` until a rate fails (or halve until one passes),
    then bisect between the best pass and the lowest fail until they are within 5%."""

    def next_rate(points: list[SweepPoint]) -> float | None:
        if not points:
            return start
        if len(points) >= max_runs:
            return None
        passed = [p.rate for p in points if p.meets_slo]
        if not passed:
            lowest = min(p.rate for p in points) / 2
            return lowest if lowest >= start / 64 else None
        low = max(passed)
        above = [p.rate for p in points if not p.meets_slo and p.rate > low]
        if not above:
            return min(low * 2, ceiling) if low < ceiling else None
        high = min(above)
        return round((low + high) / 2, 4) if high > low * 1.05 else None

    return next_rate


async def sweep(
    spec: RunSpec, run: RunFn, next_rate: Callable[[list[SweepPoint]], float | None]
) -> LoadtestResult:
    """Open-loop runs at the rates `next_rate` proposes; the result carries every point and the
    full run at the highest passing rate (or the last run when none passed)."""
    if not spec.slo.any:
        raise CliError(
            "a sweep needs at least one SLO (--slo-ttft-ms, --slo-tpot-ms, --slo-e2e-ms)"
        )
    if spec.arrival.mode == "closed":
        raise CliError("a sweep varies the open-loop rate; use --arrival poisson or constant")
    points: list[SweepPoint] = []
    runs: dict[float, RunResult] = {}
    while (rate := next_rate(points)) is not None:
        rate_spec = spec.model_copy(
            update={"arrival": spec.arrival.model_copy(update={"rate": rate})}
        )
        result = await run(rate_spec)
        runs[rate] = result
        points.append(
            SweepPoint(rate=rate, meets_slo=meets(result.summary, spec.slo), summary=result.summary)
        )
    passing = [p.rate for p in points if p.meets_slo]
    best = max(passing) if passing else None
    shown = runs[best] if best is not None else runs[points[-1].rate]
    return LoadtestResult(
        kind="sweep",
        created=_now(),
        run=shown,
        sweep=SweepResult(
            slo=spec.slo, points=sorted(points, key=lambda p: p.rate), best_rate=best
        ),
    )


def single(result: RunResult) -> LoadtestResult:
    return LoadtestResult(kind="run", created=_now(), run=result)
