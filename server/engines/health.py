"""Health probing shared by managed engines and upstream replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from codeserve.server.config import ModelSpec, Settings
from codeserve.server.engines.backend import EngineProfile
from codeserve.server.engines.replicas import Replica, ReplicaPool
from codeserve.server.fim.renderer import PromptRenderer
from codeserve.server.metrics import GatewayMetrics
from codeserve.server.protocol import ModelState

log = logging.getLogger("codeserve.engines")
GENERATED_TOKENS = "vllm:generation_tokens_total"


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
    # Managed engines: which program serves the model (set when the supervisor starts it).
    profile: EngineProfile | None = None

    @property
    def on_transformers(self) -> bool:
        return self.profile is not None and self.profile.backend == "transformers"

    @property
    def engine_model_name(self) -> str:
        """The model name the engine uses in its answers."""
        return self.profile.reported_name if self.profile else self.spec.upstream_model_name

    @property
    def name(self) -> str:
        return self.spec.name


async def probe(session: aiohttp.ClientSession, url: str, timeout_s: float) -> bool:
    """True when the server at `url` answers /health with 200 within the timeout."""
    try:
        async with session.get(
            url + "/health", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


async def fetch_max_model_len(
    session: aiohttp.ClientSession, url: str, model: str, timeout_s: float
) -> int | None:
    """vLLM reports each model's context length in /v1/models; other servers may not."""
    try:
        async with session.get(
            url + "/v1/models", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            data = orjson.loads(await resp.read())
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError):
        return None
    for card in data.get("data", []) if isinstance(data, dict) else []:
        if isinstance(card, dict) and card.get("id") == model:
            value = card.get("max_model_len")
            return value if isinstance(value, int) else None
    return None


async def fetch_generated_tokens(
    session: aiohttp.ClientSession, url: str, timeout_s: float
) -> float | None:
    """The engine's output token counter (vLLM's `vllm:generation_tokens_total`, summed over
    its label sets), or None when /metrics does not answer in time or lacks it."""
    try:
        async with session.get(
            url + "/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status != 200:
                return None
            text = (await resp.read()).decode("utf-8", "replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(GENERATED_TOKENS) and line[len(GENERATED_TOKENS)] in "{ ":
            try:
                total += float(line.rsplit(None, 1)[-1])
                seen = True
            except ValueError:
                continue
    return total if seen else None


class EngineRunner:
    """Base of the per-model background task that keeps an engine's state current."""

    def __init__(
        self,
        entry: ModelEntry,
        session: aiohttp.ClientSession,
        settings: Settings,
        metrics: GatewayMetrics,
    ) -> None:
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
        """Probe one replica. A probe that fails while the replica is generating for us and
        making progress counts as "busy", not as a failure: a CPU engine under load answers
        /health late, and ejecting it would turn one slow probe into 503s for everyone."""
        ok = await probe(self.session, replica.url, self.settings.health_timeout_s)
        # Sampled at every check while requests are in flight, so a late probe has a baseline.
        progressing = replica.in_flight > 0 and await self.making_progress(replica)
        replica.busy = False
        if ok:
            replica.health_failures = 0
            replica.healthy = True
            if self.entry.max_model_len is None:
                self.entry.max_model_len = self.entry.spec.max_model_len or (
                    await fetch_max_model_len(
                        self.session,
                        replica.url,
                        self.entry.spec.upstream_model_name,
                        self.settings.health_timeout_s,
                    )
                )
        elif replica.healthy and progressing:
            replica.busy = True
            replica.health_failures = 0
            log.info(
                "[%s] %s answered its health check late while generating: busy",
                self.entry.name,
                replica.url,
            )
        else:
            replica.health_failures += 1
            if replica.health_failures >= self.settings.health_failures_to_eject:
                replica.healthy = False
        self.metrics.replica_healthy.labels(self.entry.name, replica.url).set(
            1 if replica.healthy else 0
        )
        return ok

    async def making_progress(self, replica: Replica) -> bool:
        """Whether the replica generated tokens since the last look: its vLLM metrics' output
        token counter grew (engines run elsewhere; managed engines are judged locally)."""
        tokens = await fetch_generated_tokens(
            self.session, replica.url, self.settings.health_timeout_s
        )
        grew = (
            tokens is not None
            and replica.tokens_seen is not None
            and (tokens > replica.tokens_seen)
        )
        if tokens is not None:
            replica.tokens_seen = tokens
        return grew

    def state_from_replicas(self) -> ModelState:
        """ "ready" while every replica answers its probes; "degraded" while some do and others
        are out of rotation; "busy" while the only ones left in rotation are generating but
        late to answer; "failed" when none is in rotation."""
        everyone = self.entry.pool.replicas
        replicas = [r for r in everyone if r.healthy]
        if any(not r.busy for r in replicas):
            return "ready" if len(replicas) == len(everyone) else "degraded"
        return "busy" if replicas else "failed"

    async def run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Release what the runner owns (managed engines stop their processes)."""
