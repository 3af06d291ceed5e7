"""Behaviour knobs and counters of the mock OpenAI upstream (`codeserve.loadtest.mock_server`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MockConfig(BaseSettings):
    """How the mock behaves. Every field is also a `python -m codeserve.loadtest.mock_server` flag
    (`--ttft-ms` for `ttft_ms`) and an env var (`CODESERVE_MOCK_TTFT_MS`)."""

    model_config = SettingsConfigDict(env_prefix="CODESERVE_MOCK_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    model_name: str = Field("mock-model", description="listed by /v1/models; requests echo theirs")
    strict_model: bool = Field(False, description="404 for a model other than model_name")
    ttft_ms: float = Field(0.0, ge=0, description="delay before the first token")
    itl_ms: float = Field(0.0, ge=0, description="delay between consecutive tokens")
    output_tokens: int | None = Field(
        None, ge=0, description="fixed output length, overrides max_tokens"
    )
    default_max_tokens: int = Field(16, ge=0, description="output length when a request sets none")
    max_n: int = Field(128, ge=1, description="largest accepted n")
    token_text: str = Field(" tok", description="text of every generated token")
    completion_text: str | None = Field(
        None, description="fixed answer, one whitespace-led word per token; finish_reason stop"
    )
    max_concurrency: int = Field(
        0, ge=0, description="requests served at once; more queue (0 = no cap)"
    )
    fail_rate: float = Field(0.0, ge=0, le=1, description="fraction answered with fail_status")
    fail_status: int = Field(500, ge=400, le=599)
    fail_first: int = Field(0, ge=0, description="answer the first K requests with fail_status")
    hang_rate: float = Field(0.0, ge=0, le=1, description="fraction that never answer")
    die_rate: float = Field(
        0.0, ge=0, le=1, description="fraction whose connection drops mid-stream"
    )
    die_after_tokens: int = Field(1, ge=0, description="tokens sent before a dying request drops")
    health_status: int = Field(200, ge=200, le=599, description="status of GET /health")
    busy_health_delay_ms: float = Field(
        0.0,
        ge=0,
        description="GET /health waits this long while requests generate (a loaded "
        "CPU engine answers its probes late)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _fault_rates_fit(self) -> MockConfig:
        if self.fail_rate + self.hang_rate + self.die_rate > 1.0 + 1e-9:
            raise ValueError("fail_rate + hang_rate + die_rate must not exceed 1")
        return self


@dataclass
class MockStats:
    """Counters served on `GET /mock/stats`; tests assert on them."""

    received: int = 0  # every generation request that reached a handler
    completed: int = 0  # answered in full
    aborted: int = 0  # client went away before the answer was complete
    failed: int = 0  # answered with an injected error status
    hung: int = 0  # chose to hang (they end up aborted when the client gives up)
    died: int = 0  # connection dropped on purpose
    rejected: int = 0  # invalid requests (400/404)
    running: int = 0  # generating now
    waiting: int = 0  # queued behind max_concurrency
    max_running: int = 0  # high-water mark of `running`
    output_tokens: int = 0  # tokens sent, all candidates

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
