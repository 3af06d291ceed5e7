"""Order statistics every report shares: one percentile rule and one summary of a metric, so the
eval harness and the load tester state latencies alike and a p99 means the same in both."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class Distribution(BaseModel):
    """Order statistics of one metric, in the unit its field names (`ttft_s`, `e2e_ms`).
    `quantiles` holds p0..p100 in steps of 1, for plots (a CDF) and comparisons; files written
    before it existed load with it empty."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    quantiles: list[float] = Field(default_factory=list)


def distribution(values: Iterable[float], scale: float = 1.0) -> Distribution:
    """The summary of `values`, each multiplied by `scale` first (1000: seconds to ms)."""
    ordered = sorted(v * scale for v in values)
    if not ordered:
        return Distribution()
    return Distribution(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        quantiles=[percentile(ordered, q) for q in range(101)],
    )
