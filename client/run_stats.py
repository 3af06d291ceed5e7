"""Latency percentiles, histograms and throughput of an eval run, computed from its records.

Everything is derived from `records.jsonl`, so a resumed run reports over all its sessions: each
session's span (first send to last end) counts once, and the idle time between sessions does not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from codeserve.client.protocol import (
    EvalRecord,
    Histogram,
    LatencySummary,
    Throughput,
)
from codeserve.common.stats import distribution

HISTOGRAM_BINS = 20


def histogram(values: Iterable[float], bins: int = HISTOGRAM_BINS) -> Histogram:
    ordered = sorted(values)
    if not ordered:
        return Histogram(edges=[], counts=[])
    low, high = ordered[0], ordered[-1]
    if high <= low:
        return Histogram(edges=[low, low], counts=[len(ordered)])
    width = (high - low) / bins
    counts = [0] * bins
    for value in ordered:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return Histogram(edges=[low + i * width for i in range(bins + 1)], counts=counts)


def latency_summary(records: Sequence[EvalRecord]) -> LatencySummary:
    """Over successful requests only: a failed request's time says nothing about serving speed."""
    ok = [r for r in records if r.ok and r.latency_s is not None]
    e2e = [r.latency_s for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    return LatencySummary(
        ttft_s=distribution(ttft),
        e2e_s=distribution(e2e),
        e2e_histogram=histogram(e2e),
        ttft_histogram=histogram(ttft) if ttft else None,
    )


def throughput(records: Sequence[EvalRecord]) -> Throughput:
    timed = [r for r in records if r.latency_s is not None]
    spans: dict[str, list[float]] = defaultdict(lambda: [math.inf, -math.inf])
    for record in timed:
        span = spans[record.session]
        span[0] = min(span[0], record.sent_at)
        span[1] = max(span[1], record.sent_at + (record.latency_s or 0.0))
    duration = sum(end - start for start, end in spans.values())
    ok = [r for r in records if r.ok]
    candidates = sum(len(r.completions) for r in ok)
    token_counts = [r.completion_tokens for r in ok if r.completion_tokens is not None]
    tokens = sum(token_counts) if token_counts else None
    return Throughput(
        duration_s=duration,
        requests=len(records),
        failed_requests=len(records) - len(ok),
        candidates=candidates,
        output_tokens=tokens,
        candidates_per_s=candidates / duration if duration > 0 else None,
        output_tokens_per_s=tokens / duration if duration > 0 and tokens is not None else None,
    )
