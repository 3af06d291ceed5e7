"""Built-in scoring: POST /v1/score runs candidates in the sandbox and returns verdicts and
pass@k. Off unless `scoring_enabled`; concurrency is bounded so scoring cannot starve serving."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from codeserve.server.config import Settings
from codeserve.server.errors import (
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    UnavailableError,
)
from codeserve.server.protocol import ScoreRequest

log = logging.getLogger("codeserve")


class ScoreService:
    def __init__(self, settings: Settings) -> None:
        from codeserve.scoring.scorer import ScoringService

        self.settings = settings
        self.scoring = ScoringService()
        self._slots = asyncio.Semaphore(settings.scoring_concurrency)
        self._waiting = 0

    async def start(self) -> None:
        report = await asyncio.to_thread(self.scoring.pool.start)
        log.info("scoring sandbox: %s", report.describe())

    def close(self) -> None:
        self.scoring.close()

    def check(self, req: ScoreRequest) -> None:
        limits = self.scoring.settings
        if len(req.completions) > limits.max_completions:
            raise PayloadTooLargeError(
                f"{len(req.completions)} completions given; at most "
                f"{limits.max_completions} per request",
                param="completions",
            )
        longest = max(len(c) for c in req.completions)
        if longest > limits.max_completion_chars:
            raise PayloadTooLargeError(
                f"a completion of {longest} characters exceeds the limit of "
                f"{limits.max_completion_chars}",
                param="completions",
            )

    async def score(self, req: ScoreRequest) -> Any:
        from codeserve.datasets.errors import DatasetError

        self.check(req)
        # A bounded wait: past a queue four times the concurrency, refuse instead of piling up.
        if self._waiting >= self.settings.scoring_concurrency * 4:
            raise OverloadedError("scoring is busy; retry later", headers={"Retry-After": "2"})
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self.scoring.score_completions(
                req.benchmark, req.task_id, req.completions, req.k or [1]
            )
        except DatasetError as exc:
            raise UnavailableError(
                f"benchmark data unavailable: {exc}", code="dataset_unavailable"
            ) from None
        finally:
            self._slots.release()


def disabled() -> NotFoundError:
    return NotFoundError(
        "scoring is disabled on this gateway (set CODESERVE_SCORING_ENABLED=1)",
        code="scoring_disabled",
    )
