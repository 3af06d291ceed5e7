"""Shapes of what the eval harness sends, stores and reports.

Everything written to disk (sample records, results JSON) is one of these models, so a file from a
killed run, an older run or another machine is validated before it is trusted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from codeserve.common.records import RequestRecord
from codeserve.common.stats import Distribution


class SamplingParams(BaseModel):
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None


class Generation(RequestRecord):
    """One HTTP request's outcome (after retries; `error` is the message): candidate texts in
    `choices[].index` order, wall-clock `sent_at`, and durations in seconds from the send."""

    texts: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    sent_at: float
    ttft_s: float | None = None
    latency_s: float | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.texts) == self.n


class EvalRecord(Generation):
    """One line of records.jsonl: a request for one task and the completions (post-processed
    for scoring) of its candidates. `session` tells apart the invocations of a resumed run."""

    task_id: str
    session: str
    completions: list[str] = Field(default_factory=list)


class RunIdentity(BaseModel):
    """What must match for a rerun to continue an out dir's samples: same task prompts and
    sampling, so old and new samples are draws from one distribution."""

    model_config = ConfigDict(frozen=True)

    benchmark: str
    dataset_sha256: str
    model: str
    prompt_format: str
    temperature: float
    top_p: float
    max_tokens: int
    oracle: bool = False


class RunMetadata(BaseModel):
    identity: RunIdentity
    endpoint: str | None
    dataset_name: str
    dataset_version: str
    n: int
    limit: int | None
    tasks: int
    stream: bool
    concurrency: int
    max_n_per_request: int | None
    tool_version: str
    started_at: str
    finished_at: str


class Histogram(BaseModel):
    """Counts of values in `edges[i] <= v < edges[i+1]` (last bin closed)."""

    edges: list[float]
    counts: list[int]


class LatencySummary(BaseModel):
    ttft_s: Distribution
    e2e_s: Distribution
    e2e_histogram: Histogram
    ttft_histogram: Histogram | None = None


class Throughput(BaseModel):
    """Over the time requests were in flight, summed across the sessions of a resumed run."""

    duration_s: float
    requests: int
    failed_requests: int
    candidates: int
    output_tokens: int | None
    candidates_per_s: float | None
    output_tokens_per_s: float | None


class TaskResult(BaseModel):
    task_id: str
    samples: int
    correct: int
    pass_at_k: dict[str, float]
    first_failure: str | None = None


class EvalResults(BaseModel):
    """results.json."""

    schema_version: int = 1
    metadata: RunMetadata
    pass_at_k: dict[str, float]
    complete: bool
    missing_samples: dict[str, int] = Field(default_factory=dict)
    errors: dict[str, int] = Field(
        default_factory=dict, description="failed requests per error message, most frequent first"
    )
    tasks: list[TaskResult]
    verdict_mode: str | None = Field(
        None,
        description=(
            "where verdicts were decided. harness: the candidates' processes only computed "
            "outputs, compared in the harness with expected outputs they never saw; in-process: "
            "the benchmark's checks ran in the candidate's own process (a hostile candidate can "
            "forge a pass); none: not recorded (older files)"
        ),
    )
    latency: LatencySummary
    throughput: Throughput
