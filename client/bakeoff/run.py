"""Run a bake-off: every planned eval run through `codeserve.client.eval_run` (so every sample
is saved as it arrives and a rerun continues where a killed run stopped), then the figures,
bakeoff.json and the reports.

Models are measured one after the other, never at the same time, each at the same concurrency
and candidates per request: a model's speed is what the endpoint gives it alone. With a time
budget the runs go in rounds of growing task limits (5, 10, 20, ...): all models finish a round
before the next starts, and the next starts only if its cost, estimated from the last round,
fits in the time left; so every model ends on the same tasks.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson

from codeserve.client.bakeoff.evidence import evidence, load_samples
from codeserve.client.bakeoff.metrics import (
    headline_ks,
    median_and_p90,
    missing,
    pareto_front,
    pass_at_ks,
    pass_curve,
    solved_per_minute,
    time_for_candidates,
)
from codeserve.client.bakeoff.plan import (
    Phase,
    TargetSpec,
    check_plan_file,
    eval_config,
    next_round_fits,
    plan_phases,
    resolve_targets,
    round_limits,
)
from codeserve.client.bakeoff.published import BY_KEY, check_gap
from codeserve.client.bakeoff.results import (
    BakeoffMetadata,
    BakeoffResults,
    Machine,
    PhaseKind,
    PhaseSummary,
    PublishedCheck,
    Row,
    Settings,
    Target,
)
from codeserve.client.compare import load_results
from codeserve.client.endpoint import EndpointClient, EndpointConfig
from codeserve.client.eval_run import (
    RECORDS_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    run_eval,
    tool_version,
)
from codeserve.client.protocol import EvalRecord, EvalResults, SamplingParams
from codeserve.client.records import load_records
from codeserve.common.errors import CliError
from codeserve.datasets import load_benchmark
from codeserve.scoring.prompts import resolve_format

BAKEOFF_FILE = "bakeoff.json"
Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(f"bakeoff: {message}", file=sys.stderr, flush=True)


@dataclass
class BakeoffConfig:
    specs: list[TargetSpec]
    settings: Settings
    out_dir: Path
    styles: dict[str | None, str] = field(default_factory=dict)
    published: dict[str | None, str] = field(default_factory=dict)
    data_dir: Path | None = None
    api_key: str | None = None
    timeout_s: float = 600.0
    retries: int = 5
    progress: bool = True
    only: list[str] = field(default_factory=list)


@dataclass
class BakeoffOutcome:
    results: BakeoffResults
    out_dir: Path
    errors: dict[str, str]


async def run_bakeoff(
    config: BakeoffConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    log: Log = stderr_log,
) -> BakeoffOutcome:
    started, started_at, load_start = time.monotonic(), _now(), _load()
    settings = config.settings
    targets = await resolve_targets(
        config.specs,
        styles=config.styles,
        published=config.published,
        api_key=config.api_key,
        timeout_s=min(config.timeout_s, 30.0),
        transport=transport,
        warn=log,
        only=config.only,
    )
    sizes = {name: len(load_benchmark(name, config.data_dir)) for name in settings.benchmarks}
    check_plan_file(config.out_dir, targets)
    phases, skipped = plan_phases(targets, settings, config.out_dir)
    if not phases:
        raise CliError(
            "nothing to run: "
            + "; ".join(f"{label} {bench}: {why}" for (label, bench), why in skipped.items())
        )
    for target in targets:
        log(
            f"{target.label} at {target.base_url}: {target.style} prompts ({target.style_source})"
            f"{', fills the middle' if target.fim else ''}"
        )
    if settings.warmup:
        for target in targets:
            await _warm_up(target, phases, config, transport)
    limits = round_limits(
        settings.task_cap, max(sizes.values()), settings.time_budget_s is not None
    )
    deadline = None if settings.time_budget_s is None else started + settings.time_budget_s
    errors: dict[str, str] = {}
    loads: dict[Path, list[float | None]] = {}
    done_limits: list[int] = []
    previous = 0
    for number, limit in enumerate(limits):
        round_started = time.monotonic()
        for index, phase in enumerate(phases, start=1):
            if phase.name in errors:
                continue
            tasks = min(limit or sizes[phase.benchmark], sizes[phase.benchmark])
            log(
                f"[{index}/{len(phases)}] {phase.name}: {tasks} tasks x {phase.n}"
                + (f" (round {number + 1}/{len(limits)})" if len(limits) > 1 else "")
            )
            before = _load()
            try:
                await run_eval(
                    eval_config(
                        phase,
                        settings,
                        limit=limit,
                        data_dir=config.data_dir,
                        timeout_s=config.timeout_s,
                        retries=config.retries,
                        progress=config.progress,
                    ),
                    transport=transport,
                )
            except CliError as exc:
                errors[phase.name] = " ".join(str(exc).split())
                log(f"{phase.name} failed: {errors[phase.name]}")
                continue
            loads[phase.run_dir] = [before, _load()]
        reached = limit or max(sizes.values())
        done_limits.append(reached)
        if deadline is not None and number + 1 < len(limits):
            following = limits[number + 1] or max(sizes.values())
            if not next_round_fits(
                time.monotonic() - round_started,
                reached - previous,
                following - reached,
                deadline - time.monotonic(),
            ):
                log(
                    f"time budget: stopping after {reached} tasks per benchmark "
                    f"(the next round, to {following}, would not fit)"
                )
                break
        previous = reached
    if len(errors) == len(phases):
        raise CliError(next(iter(errors.values())))
    results = summarize(
        config.out_dir,
        targets,
        phases,
        skipped,
        settings,
        loads,
        data_dir=config.data_dir,
        started_at=started_at,
        wall_s=time.monotonic() - started,
        load_start=load_start,
        rounds=done_limits,
        errors=errors,
    )
    write_outputs(config.out_dir, results)
    return BakeoffOutcome(results=results, out_dir=config.out_dir, errors=errors)


async def _warm_up(
    target: Target,
    phases: Sequence[Phase],
    config: BakeoffConfig,
    transport: httpx.AsyncBaseTransport | None,
) -> None:
    """One short request per model before anything is timed: a cold engine's first request
    (compilation, caches) would otherwise land in the first model's latency figures only."""
    phase = next((p for p in phases if p.target.label == target.label), None)
    if phase is None:
        return
    try:
        benchmark = load_benchmark(phase.benchmark, config.data_dir)
        request = resolve_format(phase.prompt_format, benchmark, config.data_dir).build(
            benchmark.tasks[0]
        )
        endpoint = EndpointConfig(
            base_url=target.base_url,
            model=target.model,
            api_key=target.api_key,
            timeout_s=config.timeout_s,
            max_retries=1,
            max_connections=1,
        )
        async with EndpointClient(endpoint, transport=transport) as client:
            await client.complete(request, SamplingParams(max_tokens=8), 1)
    except CliError:
        pass  # the real run reports it


# -- figures --------------------------------------------------------------------------------------


def summarize(
    out_dir: Path,
    targets: Sequence[Target],
    phases: Sequence[Phase],
    skipped: dict[tuple[str, str], str],
    settings: Settings,
    loads: dict[Path, list[float | None]],
    *,
    data_dir: Path | None,
    started_at: str,
    wall_s: float,
    load_start: float | None,
    rounds: list[int],
    errors: dict[str, str],
) -> BakeoffResults:
    rows: list[Row] = []
    for target in targets:
        for benchmark in settings.benchmarks:
            if (target.label, benchmark) in skipped:
                rows.append(
                    Row(
                        label=target.label,
                        benchmark=benchmark,
                        style=target.style,
                        skipped=skipped[(target.label, benchmark)],
                    )
                )
                continue
            mine = {
                p.kind: p
                for p in phases
                if p.target.label == target.label and p.benchmark == benchmark
            }
            loaded = {
                kind: load_phase(out_dir, phase, loads.get(phase.run_dir), errors.get(phase.name))
                for kind, phase in mine.items()
            }
            rows.append(build_row(target, benchmark, loaded, settings, data_dir))
    pareto: dict[str, list[str]] = {}
    for benchmark in settings.benchmarks:
        points = {
            r.label: (speed, top)
            for r in rows
            if r.benchmark == benchmark
            and (speed := r.candidates_per_s)
            and (top := headline(r)) is not None
        }
        front = pareto_front(points)
        pareto[benchmark] = front
        for r in rows:
            if r.benchmark == benchmark:
                r.pareto = r.label in front
    rows.sort(
        key=lambda r: (
            settings.benchmarks.index(r.benchmark),
            r.skipped is not None,
            -(headline(r) or -1.0),
            -(r.candidates_per_s or 0.0),
            r.label,
        )
    )
    metadata = BakeoffMetadata(
        tool_version=tool_version(),
        started_at=started_at,
        finished_at=_now(),
        wall_s=wall_s,
        machine=Machine(
            cpus=os.cpu_count(),
            platform=platform.platform(),
            load_1m_start=load_start,
            load_1m_end=_load(),
        ),
        settings=settings,
        rounds=rounds,
    )
    complete = all(r.complete for r in rows if r.skipped is None)
    return BakeoffResults(
        metadata=metadata, targets=list(targets), rows=rows, pareto=pareto, complete=complete
    )


def headline(row: Row) -> float | None:
    """The pass@k the leaderboard ranks by: pass@k at the sampled n, else greedy pass@1."""
    if row.k is not None and f"pass@{row.k}" in row.pass_at_k:
        return row.pass_at_k[f"pass@{row.k}"]
    return row.pass_at_1


@dataclass
class LoadedPhase:
    """One eval run folder read back: its summary, per-task results, records and samples."""

    summary: PhaseSummary
    run_dir: Path
    results: EvalResults | None = None
    records: list[EvalRecord] = field(default_factory=list)


def load_phase(
    out_dir: Path, phase: Phase, load: list[float | None] | None, error: str | None
) -> LoadedPhase:
    base = PhaseSummary(
        kind=phase.kind,
        run_dir=str(phase.run_dir.relative_to(out_dir)),
        prompt_format=phase.prompt_format or "default",
        n=phase.n,
        temperature=phase.sampling.temperature,
        tasks=0,
        complete=False,
        load_1m=[v for v in load or [] if v is not None],
        error=error,
    )
    if not (phase.run_dir / RESULTS_FILE).exists():
        return LoadedPhase(base, phase.run_dir)
    results = load_results(phase.run_dir / RESULTS_FILE)
    wanted = {t.task_id for t in results.tasks}
    records = [r for r in load_records(phase.run_dir / RECORDS_FILE) if r.task_id in wanted]
    p50, p90 = median_and_p90(time_for_candidates(records))
    tp, ttft = results.throughput, results.latency.ttft_s
    summary = base.model_copy(
        update=dict(
            prompt_format=results.metadata.identity.prompt_format,
            tasks=len(results.tasks),
            complete=results.complete and error is None,
            missing_samples=missing(results),
            pass_at_k=pass_at_ks(results.tasks, headline_ks(phase.n)),
            candidates=tp.candidates,
            output_tokens=tp.output_tokens,
            requests=tp.requests,
            failed_requests=tp.failed_requests,
            engine_s=tp.duration_s,
            candidates_per_s=tp.candidates_per_s,
            output_tokens_per_s=tp.output_tokens_per_s,
            ttft_p50_s=ttft.p50,
            ttft_p99_s=ttft.p99,
            e2e_p50_s=results.latency.e2e_s.p50,
            time_for_n_p50_s=p50,
            time_for_n_p90_s=p90,
        )
    )
    return LoadedPhase(summary, phase.run_dir, results, records)


def build_row(
    target: Target,
    benchmark: str,
    phases: Mapping[PhaseKind, LoadedPhase],
    settings: Settings,
    data_dir: Path | None = None,
) -> Row:
    greedy_run, sampled_run = phases.get("greedy"), phases.get("sampled")
    greedy = greedy_run.summary if greedy_run else None
    sampled = sampled_run.summary if sampled_run else None
    summaries = [p.summary for p in phases.values()]
    row = Row(
        label=target.label,
        benchmark=benchmark,
        style=target.style,
        greedy=greedy,
        sampled=sampled,
        prompt_format=summaries[0].prompt_format,
        tasks=max(s.tasks for s in summaries),
        complete=all(s.complete for s in summaries) and len({s.tasks for s in summaries}) == 1,
    )
    if greedy is not None and "pass@1" in greedy.pass_at_k:
        row.pass_at_1, row.pass_at_1_from = greedy.pass_at_k["pass@1"], "greedy"
    elif sampled is not None and "pass@1" in sampled.pass_at_k:
        row.pass_at_1, row.pass_at_1_from = sampled.pass_at_k["pass@1"], "sampled"
    if sampled_run is not None and sampled is not None:
        row.k = sampled.n
        row.pass_at_k = dict(sampled.pass_at_k)
        if sampled_run.results is not None:
            row.curve = pass_curve(sampled_run.results.tasks, sampled.n)
    speed = sampled if sampled is not None and sampled.candidates else greedy
    if speed is not None and speed.candidates:
        row.speed_from = speed.kind
        row.candidates_per_s = speed.candidates_per_s
        row.output_tokens_per_s = speed.output_tokens_per_s
        row.time_for_k_s = speed.time_for_n_p50_s
        solved = headline(row) if speed.kind == "sampled" else row.pass_at_1
        row.solved_per_min = solved_per_minute(solved, speed.tasks, speed.engine_s)
    ttft = next((s for s in (greedy, sampled) if s is not None and s.ttft_p50_s is not None), None)
    if ttft is not None:
        row.ttft_from, row.ttft_p50_s, row.ttft_p99_s = ttft.kind, ttft.ttft_p50_s, ttft.ttft_p99_s
    row.published = published_check(target, benchmark, row, settings.gap_threshold_pp)
    source = next((p for p in (greedy_run, sampled_run) if p is not None and p.results), None)
    if source is not None:
        samples = load_samples(source.run_dir / SAMPLES_FILE)
        entry_points = None
        if source.summary.prompt_format == "chat":
            entry_points = {
                t.task_id: t.entry_point for t in load_benchmark(benchmark, data_dir).tasks
            }
        row.evidence = evidence(source.summary.kind, samples, source.records, entry_points)
    return row


def published_check(
    target: Target, benchmark: str, row: Row, threshold: float
) -> PublishedCheck | None:
    if target.published_key is None or row.pass_at_1 is None or not row.tasks:
        return None
    pub = BY_KEY[target.published_key]
    score = pub.scores.get(benchmark)
    if score is None:
        return None
    gap = check_gap(score, row.pass_at_1, row.tasks, threshold)
    notes = []
    if benchmark in pub.notes:
        notes.append(f"published: {pub.notes[benchmark]}")
    if row.pass_at_1_from == "sampled":
        notes.append("ours is sampled pass@1, not greedy")
    if gap.within_noise:
        notes.append(f"a {row.tasks}-task slice: ±{gap.stderr_pp:.1f} pp standard error")
    return PublishedCheck(
        key=pub.key,
        model=pub.model,
        source=pub.source,
        published_pct=gap.published_pct,
        ours_pct=gap.ours_pct,
        gap_pp=gap.gap_pp,
        flagged=gap.flagged,
        stderr_pp=gap.stderr_pp,
        within_noise=gap.within_noise,
        note="; ".join(notes),
    )


def write_outputs(out_dir: Path, results: BakeoffResults) -> None:
    from codeserve.client.bakeoff.report import write_reports

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BAKEOFF_FILE).write_bytes(
        orjson.dumps(results.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
    )
    write_reports(results, out_dir)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
