"""When open-loop requests are meant to be sent: offsets in seconds from the run's start.

Closed-loop runs have no schedule (each user sends when its previous answer ends); everything
here is about open loop. The schedule is fixed before the run starts, from a seeded generator,
so a slow server cannot slow the arrivals down (that is what makes coordinated omission visible).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from codeserve.loadtest.protocol import ArrivalSpec


def gaps(spec: ArrivalSpec, rng: random.Random) -> Iterator[float]:
    """Endless inter-arrival gaps with mean 1/rate.

    Gamma gaps with shape k and scale 1/(rate*k) keep the mean while k sets the spread:
    k=1 is exponential (Poisson arrivals), k<1 clusters arrivals into bursts.
    """
    if spec.rate is None:
        raise ValueError("open-loop arrivals need a rate")
    rate = spec.rate
    if spec.mode == "constant":
        while True:
            yield 1.0 / rate
    shape = spec.burstiness
    scale = 1.0 / (rate * shape)
    while True:
        yield rng.gammavariate(shape, scale)


def schedule(
    spec: ArrivalSpec, *, seed: int, count: int | None = None, duration_s: float | None = None
) -> list[float]:
    """Intended send offsets: the first `count` arrivals, or all before `duration_s`.
    The first request goes at 0."""
    if (count is None) == (duration_s is None):
        raise ValueError("give exactly one of count and duration_s")
    rng = random.Random(seed)
    offsets: list[float] = []
    t = 0.0
    for gap in gaps(spec, rng):
        if count is not None and len(offsets) >= count:
            break
        if duration_s is not None and t >= duration_s:
            break
        offsets.append(t)
        t += gap
    return offsets
