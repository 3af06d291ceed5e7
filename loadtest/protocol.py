"""Shapes of a load test: what to run (`RunSpec`), what was measured (`LoadtestRecord`), and the
results file (`LoadtestResult`), which `compare` and `report` read back and validate.

Times inside records are seconds on the run's monotonic clock (0 = the run's start); summary
figures are milliseconds (latencies) or per-second rates.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codeserve.common.records import RequestRecord
from codeserve.common.stats import Distribution

ArrivalMode = Literal["closed", "constant", "poisson"]
Endpoint = Literal["completions", "chat"]


class ArrivalSpec(BaseModel):
    """Closed loop: `concurrency` users, each sending when its last answer ends. Open loop:
    requests at `rate` per second, evenly spaced (constant) or with gamma-distributed gaps whose
    shape is `burstiness` (1 = Poisson, below 1 burstier, above 1 more regular)."""

    model_config = ConfigDict(extra="forbid")

    mode: ArrivalMode = "poisson"
    concurrency: int | None = Field(None, ge=1)
    rate: float | None = Field(None, gt=0)
    burstiness: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _mode_has_its_parameter(self) -> ArrivalSpec:
        if self.mode == "closed" and self.concurrency is None:
            raise ValueError("a closed-loop run needs a concurrency")
        if self.mode != "closed" and self.rate is None:
            raise ValueError("an open-loop run needs a rate")
        return self


class WorkloadSpec(BaseModel):
    """Which prompts are sent and what each request asks for."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("synthetic", description="'synthetic' or a benchmark name")
    endpoint: Endpoint = "completions"
    prompt_tokens: int = Field(128, ge=1, description="synthetic prompt length")
    suffix_tokens: int = Field(64, ge=0, description="synthetic FIM suffix length")
    fim_fraction: float = Field(0.0, ge=0, le=1, description="share of requests with a suffix")
    n: int = Field(1, ge=1, le=100)
    max_tokens: int = Field(64, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool = False
    temperature: float | None = Field(None, ge=0)
    stop: list[str] = Field(default_factory=list)
    pool_size: int = Field(512, ge=1, description="distinct synthetic prompts drawn from")
    max_tasks: int | None = Field(None, ge=1, description="benchmark: only its first tasks")

    @model_validator(mode="after")
    def _fim_needs_completions(self) -> WorkloadSpec:
        if self.fim_fraction > 0 and self.endpoint == "chat":
            raise ValueError("FIM requests (a suffix) need the completions endpoint")
        return self


class SloSpec(BaseModel):
    """Per-request service-level objectives; a request meets them when every candidate does."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2e_ms: float | None = Field(None, gt=0)
    attainment: float = Field(0.9, gt=0, le=1, description="share of requests that must meet them")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))


class RunSpec(BaseModel):
    """One load-test run against an OpenAI-compatible base URL (`.../v1`)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key: str | None = Field(None, exclude=True)
    arrival: ArrivalSpec
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    slo: SloSpec = Field(default_factory=SloSpec)
    duration_s: float | None = Field(None, gt=0)
    num_requests: int | None = Field(None, ge=1)
    warmup_s: float = Field(0.0, ge=0)
    warmup_requests: int = Field(0, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    max_inflight: int = Field(512, ge=1, description="open loop: requests in flight at most")
    score_fraction: float = Field(0.0, ge=0, le=1, description="share of candidates scored")
    seed: int = 0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @model_validator(mode="after")
    def _has_an_end(self) -> RunSpec:
        if (self.duration_s is None) == (self.num_requests is None):
            raise ValueError("give exactly one of a duration or a request count")
        return self


class CandidateRecord(BaseModel):
    """One choice index of one request; times are seconds from the request's intended send."""

    index: int
    ttft_s: float | None = None
    e2e_s: float | None = None
    chunks: int = 0
    tokens: int = 0
    finish_reason: str | None = None
    itl_s: list[float] = Field(default_factory=list)
    text: str | None = None  # kept only for candidates sampled for scoring

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.e2e_s is None or self.tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.tokens - 1)


class LoadtestRecord(RequestRecord):
    """One request: when it was meant to go, when it went, how it ended, its candidates.
    `error` is a type ("http_503", "timeout"; None when every candidate finished) to count by,
    `error_detail` the server's message, shortened; `prompt_tokens` falls back to the
    workload's count when the server reports no usage."""

    seq: int
    warmup: bool = False
    intended_s: float
    sent_s: float
    done_s: float
    fim: bool = False
    error_detail: str | None = None
    candidates: list[CandidateRecord] = Field(default_factory=list)

    @property
    def send_lag_s(self) -> float:
        return self.sent_s - self.intended_s


class Summary(BaseModel):
    duration_s: float
    offered_rate: float | None = None  # open loop: requests per second asked for
    requests: int
    requests_ok: int
    candidates_ok: int
    errors: dict[str, int] = Field(default_factory=dict)
    error_examples: dict[str, str] = Field(default_factory=dict)  # one message per error type
    request_throughput: float
    candidate_throughput: float
    output_token_throughput: float
    goodput: float | None = None  # requests per second meeting every SLO
    candidate_goodput: float | None = None
    slo_attainment: float | None = None  # share of requests meeting every SLO
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    e2e_ms: Distribution  # per candidate: last chunk of that index
    request_latency_ms: Distribution  # per request: last chunk of any index
    send_lag_ms: Distribution
    scored: int = 0
    pass_rate: float | None = None


class TimelinePoint(BaseModel):
    t_s: float  # bucket start, seconds from the run's start
    candidates: float  # candidates finished per second in this bucket
    output_tokens: float  # tokens per second
    requests: float


class RunResult(BaseModel):
    spec: RunSpec
    summary: Summary
    timeline: list[TimelinePoint] = Field(default_factory=list)
    records: list[LoadtestRecord] | None = None


class SweepPoint(BaseModel):
    rate: float
    meets_slo: bool
    summary: Summary


class SweepResult(BaseModel):
    slo: SloSpec
    points: list[SweepPoint]
    best_rate: float | None = None  # highest rate that met the SLOs


class LoadtestResult(BaseModel):
    """The results JSON. A sweep also carries the full run at its best rate (or its last)."""

    kind: Literal["run", "sweep"]
    tool: str = "codeserve-loadtest"
    version: int = 1
    created: str
    run: RunResult
    sweep: SweepResult | None = None
