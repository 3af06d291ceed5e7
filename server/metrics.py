"""Prometheus metrics of the gateway, in a registry owned by the app (no process globals)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from codeserve.server.protocol import ModelState

STATES: tuple[ModelState, ...] = (
    "starting",
    "ready",
    "busy",
    "degraded",
    "restarting",
    "failed",
)

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "codeserve_requests",
            "Requests by model and HTTP status.",
            ["model", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "codeserve_requests_in_flight",
            "Requests being served by the engine.",
            ["model"],
            registry=r,
        )
        self.queue_length = Gauge(
            "codeserve_queue_length", "Requests waiting for an engine slot.", ["model"], registry=r
        )
        self.candidates = Counter(
            "codeserve_candidates",
            "Candidates requested (sum of n x prompts).",
            ["model"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "codeserve_prompt_tokens", "Prompt tokens (from engine usage).", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "codeserve_completion_tokens",
            "Completion tokens (from engine usage).",
            ["model"],
            registry=r,
        )
        self.ttft = Histogram(
            "codeserve_time_to_first_token_seconds",
            "Time to the first streamed byte.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "codeserve_request_duration_seconds",
            "End-to-end request latency.",
            ["model"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.engine_state = Gauge(
            "codeserve_engine_state",
            "1 for the current state of each model's engine.",
            ["model", "state"],
            registry=r,
        )
        self.engine_restarts = Counter(
            "codeserve_engine_restarts",
            "Engine restarts by the supervisor.",
            ["model"],
            registry=r,
        )
        # The API dialect each request came in (IDE plugin protocols); the families above keep
        # their labels, so dashboards built on them are unaffected.
        self.dialect_requests = Counter(
            "codeserve_dialect_requests",
            "Requests by API dialect, model and HTTP status.",
            ["dialect", "model", "status"],
            registry=r,
        )
        self.replica_healthy = Gauge(
            "codeserve_replica_healthy",
            "1 when a replica passes health checks.",
            ["model", "replica"],
            registry=r,
        )

    def register_model(self, model: str) -> None:
        """Create every labelled series up front so dashboards see zeros, not gaps."""
        self.in_flight.labels(model)
        self.queue_length.labels(model)
        self.candidates.labels(model)
        self.prompt_tokens.labels(model)
        self.completion_tokens.labels(model)
        self.engine_restarts.labels(model)
        self.set_state(model, "starting")

    def set_state(self, model: str, state: ModelState) -> None:
        for s in STATES:
            self.engine_state.labels(model, s).set(1 if s == state else 0)

    def record_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.completion_tokens.labels(model).inc(completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
