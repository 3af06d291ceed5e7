"""Upstream engines: OpenAI-compatible servers running elsewhere (replicas of one model)."""

from __future__ import annotations

import asyncio

from codeserve.server.config import UpstreamEngine
from codeserve.server.discovery import ReplicaRefresher
from codeserve.server.engines.health import EngineRunner
from codeserve.server.protocol import SERVING_STATES


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
            self.refresher = ReplicaRefresher(
                urls, self._replicas_changed, interval_s=engine.discover_interval_s
            )
            await self.refresher.refresh()
            self.refresher.start()
        else:
            pool.set_urls(urls)
        while True:
            await asyncio.gather(*(self.check_replica(r) for r in pool.replicas))
            state = self.state_from_replicas()
            if state != "failed" or self.entry.state in SERVING_STATES:
                self.set_state(state)
            await asyncio.sleep(self.settings.health_interval_s)

    def _replicas_changed(self, urls: list[str]) -> None:
        gone = {r.url for r in self.entry.pool.replicas} - set(urls)
        self.entry.pool.set_urls(urls)
        for url in gone:  # no stale health series for pods that no longer exist
            try:
                self.metrics.replica_healthy.remove(self.entry.name, url)
            except KeyError:
                pass

    async def stop(self) -> None:
        if self.refresher is not None:
            await self.refresher.stop()
