"""Health probing shared by managed engines and upstream replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from codeserve.server.config import ModelSpec, Settings
from codeserve.server.engines.replicas import Replica, ReplicaPool
from codeserve.server.fim import PromptRenderer
from codeserve.server.metrics import GatewayMetrics
from codeserve.server.protocol import ModelState

log = logging.getLogger("codeserve.engines")


@dataclass(eq=False)
class ModelEntry:
    """What the gateway knows about one public model."""

    spec: ModelSpec
    pool: ReplicaPool
    state: ModelState = "starting"
    created: int = field(default_factory=lambda: int(time.time()))
    max_model_len: int | None = None
    fim_template: str | None = None
    # Tokenizer and FIM template, loaded at start-up (None only for entries built by hand).
    renderer: PromptRenderer | None = None

    @property
    def name(self) -> str:
        return self.spec.name


async def probe(session: aiohttp.ClientSession, url: str, timeout_s: float) -> bool:
    """True when the server at `url` answers /health with 200 within the timeout."""
    try:
        async with session.get(url + "/health",
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


async def fetch_max_model_len(session: aiohttp.ClientSession, url: str, model: str,
                              timeout_s: float) -> int | None:
    """vLLM reports each model's context length in /v1/models; other servers may not."""
    try:
        async with session.get(url + "/v1/models",
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            data = orjson.loads(await resp.read())
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError):
        return None
    for card in data.get("data", []) if isinstance(data, dict) else []:
        if isinstance(card, dict) and card.get("id") == model:
            value = card.get("max_model_len")
            return value if isinstance(value, int) else None
    return None


class EngineRunner:
    """Base of the per-model background task that keeps an engine's state current."""

    def __init__(self, entry: ModelEntry, session: aiohttp.ClientSession, settings: Settings,
                 metrics: GatewayMetrics) -> None:
        self.entry = entry
        self.session = session
        self.settings = settings
        self.metrics = metrics

    def set_state(self, state: ModelState) -> None:
        if self.entry.state != state:
            log.info("[%s] %s -> %s", self.entry.name, self.entry.state, state)
        self.entry.state = state
        self.metrics.set_state(self.entry.name, state)

    async def check_replica(self, replica: Replica) -> bool:
        ok = await probe(self.session, replica.url, self.settings.health_timeout_s)
        if ok:
            replica.health_failures = 0
            replica.healthy = True
            if self.entry.max_model_len is None:
                self.entry.max_model_len = self.entry.spec.max_model_len or (
                    await fetch_max_model_len(self.session, replica.url,
                                              self.entry.spec.upstream_model_name,
                                              self.settings.health_timeout_s)
                )
        else:
            replica.health_failures += 1
            if replica.health_failures >= self.settings.health_failures_to_eject:
                replica.healthy = False
        self.metrics.replica_healthy.labels(self.entry.name, replica.url).set(
            1 if replica.healthy else 0
        )
        return ok

    async def run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Release what the runner owns (managed engines stop their processes)."""
