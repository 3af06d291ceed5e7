"""Upstream engines: OpenAI-compatible servers running elsewhere (replicas of one model)."""

from __future__ import annotations

import asyncio

from server.config import UpstreamEngine
from server.discovery import ReplicaRefresher
from server.engines.health import EngineRunner


class UpstreamRunner(EngineRunner):
    """Health-checks every replica; the model is ready while at least one replica is.

    With `discover: true` each URL's host name is re-resolved (a Kubernetes headless Service has
    one address per ready pod), so replicas come and go without a gateway restart.
    """

    refresher: ReplicaRefresher | None = None

    async def run(self) -> None:
        engine = self.entry.spec.engine
        assert isinstance(engine, UpstreamEngine)
        pool = self.entry.pool
        urls = [str(u).rstrip("/") for u in engine.urls]
        if engine.discover:
            self.refresher = ReplicaRefresher(urls, pool.set_urls,
                                              interval_s=engine.discover_interval_s)
            await self.refresher.refresh()
            self.refresher.start()
        else:
            pool.set_urls(urls)
        while True:
            await asyncio.gather(*(self.check_replica(r) for r in pool.replicas))
            if pool.any_healthy():
                self.set_state("ready")
            elif self.entry.state == "ready":
                self.set_state("failed")
            await asyncio.sleep(self.settings.health_interval_s)

    async def stop(self) -> None:
        if self.refresher is not None:
            await self.refresher.stop()
