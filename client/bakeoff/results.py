"""The shape of bakeoff.json: every model's figures per benchmark, how they were measured, and the
published numbers beside them. Everything here is derived from the eval run folders on disk, so
the file can be rebuilt from them at any time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Style = Literal["base", "chat"]
PhaseKind = Literal["greedy", "sampled"]


class Target(BaseModel):
    """One model at one endpoint, as compared."""

    label: str = Field(description="the name in every table and chart")
    base_url: str
    model: str = Field(description="the name sent as `model`")
    root: str | None = Field(None, description="the checkpoint the endpoint reports (/models)")
    style: Style = Field(description="base: completion prompts; chat: chat template + sanitizer")
    style_source: str = Field(description="why this style: auto-detected from the name, or set")
    fim: bool = Field(False, description="the endpoint fills the middle for it (FIM template)")
    published_key: str | None = None
    published_source: str = ""
    api_key: str | None = Field(None, exclude=True, repr=False)  # never written to disk


class Settings(BaseModel):
    """What every model was measured with (the same for all)."""

    benchmarks: list[str]
    n: int = Field(description="sampled candidates per task (0: greedy only)")
    greedy: bool = Field(description="one extra greedy candidate per task (temperature 0)")
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    concurrency: int = Field(
        description="requests in flight, each asking for all of a task's candidates"
    )
    max_n_per_request: int | None = None
    stream: bool
    task_cap: int | None = Field(
        None, description="tasks per benchmark from --limit / --max-candidates"
    )
    time_budget_s: float | None = None
    max_candidates: int | None = None
    gap_threshold_pp: float
    warmup: bool


class PhaseSummary(BaseModel):
    """One eval run folder (one model, one benchmark, greedy or sampled), summarized."""

    kind: PhaseKind
    run_dir: str = Field(description="relative to the bake-off folder")
    prompt_format: str
    n: int
    temperature: float
    tasks: int
    complete: bool
    missing_samples: int = 0
    pass_at_k: dict[str, float] = Field(default_factory=dict)
    candidates: int = 0
    output_tokens: int | None = None
    requests: int = 0
    failed_requests: int = 0
    engine_s: float = Field(0.0, description="time with requests in flight, summed over sessions")
    candidates_per_s: float | None = None
    output_tokens_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    e2e_p50_s: float | None = None
    time_for_n_p50_s: float | None = Field(
        None, description="per task: first send to last candidate of its n, median over tasks"
    )
    time_for_n_p90_s: float | None = None
    load_1m: list[float] = Field(
        default_factory=list, description="machine load before/after the last session"
    )
    error: str | None = None


class FailureExample(BaseModel):
    task_id: str
    result: str
    finish_reason: str | None = None


class Evidence(BaseModel):
    """Why candidates of one phase failed, by cause, with a few task ids each."""

    phase: PhaseKind
    candidates: int
    failed: int
    categories: dict[str, int] = Field(default_factory=dict)
    examples: dict[str, list[FailureExample]] = Field(default_factory=dict)


class PublishedCheck(BaseModel):
    key: str
    model: str
    source: str
    published_pct: float
    ours_pct: float
    gap_pp: float = Field(description="ours - published")
    flagged: bool = Field(description="more than the threshold below the published number")
    stderr_pp: float
    within_noise: bool
    note: str = ""


class Row(BaseModel):
    """One model on one benchmark."""

    label: str
    benchmark: str
    style: Style
    prompt_format: str | None = None
    tasks: int = 0
    skipped: str | None = None
    greedy: PhaseSummary | None = None
    sampled: PhaseSummary | None = None
    pass_at_1: float | None = Field(None, description="greedy pass@1 (sampled when no greedy run)")
    pass_at_1_from: PhaseKind | None = None
    pass_at_k: dict[str, float] = Field(
        default_factory=dict,
        description="unbiased, from the sampled candidates; only k every task has samples for",
    )
    k: int | None = Field(None, description="the headline k: the sampled candidates per task")
    curve: list[tuple[int, float]] = Field(default_factory=list, description="(k, pass@k), k=1..n")
    speed_from: PhaseKind | None = None
    candidates_per_s: float | None = None
    output_tokens_per_s: float | None = None
    ttft_from: PhaseKind | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    time_for_k_s: float | None = None
    solved_per_min: float | None = Field(
        None, description="pass@k x tasks / minutes in flight of the phase that sampled them"
    )
    pareto: bool = False
    published: PublishedCheck | None = None
    evidence: Evidence | None = None
    complete: bool = False


class Machine(BaseModel):
    cpus: int | None
    platform: str
    load_1m_start: float | None = None
    load_1m_end: float | None = None


class BakeoffMetadata(BaseModel):
    tool_version: str
    started_at: str
    finished_at: str
    wall_s: float
    machine: Machine
    settings: Settings
    rounds: list[int] = Field(default_factory=list, description="task limits run, in order")


class BakeoffResults(BaseModel):
    """bakeoff.json."""

    schema_version: int = 1
    metadata: BakeoffMetadata
    targets: list[Target]
    rows: list[Row]
    pareto: dict[str, list[str]] = Field(default_factory=dict)
    complete: bool
