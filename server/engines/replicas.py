"""Replicas of one model and how a request picks one: fewest requests in flight, skipping
replicas that fail health checks or were ejected after a failed request (passive health)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Replica:
    url: str  # OpenAI base without /v1, e.g. http://10.0.0.7:8000
    in_flight: int = 0
    healthy: bool = False
    health_failures: int = 0
    ejected_until: float = 0.0
    # Late to answer its last probe while generating for us and making progress: still serving.
    busy: bool = False
    tokens_seen: float | None = None  # its output token counter at the last look

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until


@dataclass
class ReplicaPool:
    eject_seconds: float = 10.0
    replicas: list[Replica] = field(default_factory=list)
    # Ties on in-flight count rotate, so light sequential traffic still reaches every replica.
    _turn: int = 0

    def set_urls(self, urls: Iterable[str], *, healthy: bool = False) -> None:
        """Replace the replica set, keeping the state of replicas that stay."""
        keep = {r.url: r for r in self.replicas}
        self.replicas = [keep.get(u) or Replica(u, healthy=healthy) for u in dict.fromkeys(urls)]

    def pick(self, exclude: Replica | None = None) -> Replica | None:
        now = time.monotonic()
        best: Replica | None = None
        count = len(self.replicas)
        self._turn += 1
        for i in range(count):
            r = self.replicas[(self._turn + i) % count]
            if r is exclude or not r.available(now):
                continue
            if best is None or r.in_flight < best.in_flight:
                best = r
        return best

    def eject(self, replica: Replica) -> None:
        replica.ejected_until = time.monotonic() + self.eject_seconds

    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    def any_available(self) -> bool:
        now = time.monotonic()
        return any(r.available(now) for r in self.replicas)

    def available(self) -> list[Replica]:
        now = time.monotonic()
        return [r for r in self.replicas if r.available(now)]
