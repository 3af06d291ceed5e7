"""Upstream engines: OpenAI-compatible servers running elsewhere (replicas of one model)."""

from __future__ import annotations

import asyncio

from server.config import UpstreamEngine
from server.engines.health import EngineRunner


class UpstreamRunner(EngineRunner):
    """Health-checks every replica; the model is ready while at least one replica is."""

    async def run(self) -> None:
        engine = self.entry.spec.engine
        assert isinstance(engine, UpstreamEngine)
        pool = self.entry.pool
        pool.set_urls(str(u).rstrip("/") for u in engine.urls)
        while True:
            await asyncio.gather(*(self.check_replica(r) for r in pool.replicas))
            if pool.any_healthy():
                self.set_state("ready")
            elif self.entry.state == "ready":
                self.set_state("failed")
            await asyncio.sleep(self.settings.health_interval_s)
