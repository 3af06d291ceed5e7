"""The models the gateway serves: one entry, admission queue and engine runner per model."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from codeserve.server.admission import Admission
from codeserve.server.config import ManagedEngine, ModelSpec, Settings
from codeserve.server.engines.health import EngineRunner, ModelEntry
from codeserve.server.engines.replicas import ReplicaPool
from codeserve.server.engines.supervisor import ManagedRunner
from codeserve.server.engines.upstream import UpstreamRunner
from codeserve.server.errors import ModelNotFoundError
from codeserve.server.fim.renderer import PromptRenderer
from codeserve.server.metrics import GatewayMetrics

log = logging.getLogger("codeserve")


class ModelRegistry:
    def __init__(self, specs: list[ModelSpec], settings: Settings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.entries: dict[str, ModelEntry] = {}
        self.admissions: dict[str, Admission] = {}
        self.runners: dict[str, EngineRunner] = {}
        self._tasks: list[asyncio.Task[None]] = []
        for spec in specs:
            self.entries[spec.name] = ModelEntry(
                spec=spec,
                pool=ReplicaPool(eject_seconds=settings.eject_seconds),
                max_model_len=spec.max_model_len,
                renderer=PromptRenderer(spec, settings),
            )
            self.admissions[spec.name] = Admission(
                spec.name, settings.max_in_flight, settings.max_queue, settings.queue_timeout_s
            )
            metrics.register_model(spec.name)

    def get(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "(none)"
            raise ModelNotFoundError(
                f"model {name!r} does not exist; known models: {known}", param="model"
            )
        return entry

    def states(self) -> dict[str, str]:
        return {name: e.state for name, e in self.entries.items()}

    def start(self, session: aiohttp.ClientSession) -> None:
        for entry in self.entries.values():
            self._tasks.append(
                asyncio.create_task(self._load_renderer(entry), name=f"tokenizer:{entry.name}")
            )
        for name, entry in self.entries.items():
            cls = ManagedRunner if isinstance(entry.spec.engine, ManagedEngine) else UpstreamRunner
            runner = cls(entry, session, self.settings, self.metrics)
            self.runners[name] = runner
            self._tasks.append(asyncio.create_task(self._guard(runner), name=f"engine:{name}"))

    @staticmethod
    async def _load_renderer(entry: ModelEntry) -> None:
        # Tokenizers load in a worker thread while the engines start; requests that need one
        # wait for it (PromptRenderer.wait).
        if entry.renderer is not None:
            await entry.renderer.load()
            entry.fim_template = entry.renderer.template_name

    async def _guard(self, runner: EngineRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a runner bug must not take the gateway down silently
            log.exception("[%s] engine runner crashed", runner.entry.name)
            runner.set_state("failed")

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners.values()), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
