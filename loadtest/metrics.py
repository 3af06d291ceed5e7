"""From request records to the summary figures (definitions: shared/reference.md section 5).

Warm-up requests are left out. Latencies are per candidate (choice index) and count from the
intended send time; percentiles are over successful requests; rates divide by the measurement
window, from the first measured request's intended send to the last measured answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from codeserve.common.stats import Distribution, distribution
from codeserve.loadtest.protocol import (
    CandidateRecord,
    LoadtestRecord,
    RunSpec,
    SloSpec,
    Summary,
    TimelinePoint,
)


def _ms(seconds: Iterable[float]) -> Distribution:
    return distribution(seconds, scale=1000.0)


def candidate_meets(c: CandidateRecord, slo: SloSpec) -> bool:
    tpot = c.tpot_s
    return not (
        (slo.ttft_ms is not None and (c.ttft_s is None or c.ttft_s * 1e3 > slo.ttft_ms))
        or (slo.tpot_ms is not None and tpot is not None and tpot * 1e3 > slo.tpot_ms)
        or (slo.e2e_ms is not None and (c.e2e_s is None or c.e2e_s * 1e3 > slo.e2e_ms))
    )


def measured(records: Sequence[LoadtestRecord]) -> list[LoadtestRecord]:
    return [r for r in records if not r.warmup]


def _examples(records: Sequence[LoadtestRecord]) -> dict[str, str]:
    examples: dict[str, str] = {}
    for r in records:
        if r.error and r.error_detail and r.error not in examples:
            examples[r.error] = r.error_detail
    return examples


def summarize(records: Sequence[LoadtestRecord], spec: RunSpec) -> Summary:
    kept = measured(records)
    ok = [r for r in kept if r.ok]
    cands = [c for r in ok for c in r.candidates]
    if kept:
        window = max(r.done_s for r in kept) - min(r.intended_s for r in kept)
    else:
        window = 0.0
    per_s = 1.0 / window if window > 0 else 0.0
    goodput = candidate_goodput = attainment = None
    if spec.slo.any:
        meeting = [r for r in ok if all(candidate_meets(c, spec.slo) for c in r.candidates)]
        goodput = len(meeting) * per_s
        candidate_goodput = sum(candidate_meets(c, spec.slo) for c in cands) * per_s
        attainment = len(meeting) / len(kept) if kept else 0.0
    return Summary(
        duration_s=window,
        offered_rate=spec.arrival.rate if spec.arrival.mode != "closed" else None,
        requests=len(kept),
        requests_ok=len(ok),
        candidates_ok=len(cands),
        errors=dict(Counter(r.error for r in kept if r.error)),
        error_examples=_examples(kept),
        request_throughput=len(ok) * per_s,
        candidate_throughput=len(cands) * per_s,
        output_token_throughput=sum(c.tokens for c in cands) * per_s,
        goodput=goodput,
        candidate_goodput=candidate_goodput,
        slo_attainment=attainment,
        ttft_ms=_ms(c.ttft_s for c in cands if c.ttft_s is not None),
        tpot_ms=_ms(t for c in cands if (t := c.tpot_s) is not None),
        itl_ms=_ms(g for c in cands for g in c.itl_s),
        e2e_ms=_ms(c.e2e_s for c in cands if c.e2e_s is not None),
        request_latency_ms=_ms(r.done_s - r.intended_s for r in ok),
        send_lag_ms=_ms(r.send_lag_s for r in kept),
    )


def timeline(
    records: Sequence[LoadtestRecord], bucket_s: float | None = None
) -> list[TimelinePoint]:
    """Finished candidates, tokens and requests per second, in buckets of `bucket_s` (default:
    1 s, shorter for runs under 40 s so a short run still draws a curve; warm-up included, so
    the ramp is visible)."""
    if bucket_s is None:
        span = max((r.done_s for r in records), default=0.0)
        bucket_s = 1.0 if span >= 40 else max(0.05, float(f"{span / 40:.1g}"))
    cands: Counter[int] = Counter()
    tokens: Counter[int] = Counter()
    reqs: Counter[int] = Counter()
    for r in records:
        if not r.ok:
            continue
        reqs[int(r.done_s // bucket_s)] += 1
        for c in r.candidates:
            if c.e2e_s is not None:
                b = int((r.intended_s + c.e2e_s) // bucket_s)
                cands[b] += 1
                tokens[b] += c.tokens
    if not reqs:
        return []
    last = max(max(cands, default=0), max(reqs))
    return [
        TimelinePoint(
            t_s=b * bucket_s,
            candidates=cands[b] / bucket_s,
            output_tokens=tokens[b] / bucket_s,
            requests=reqs[b] / bucket_s,
        )
        for b in range(last + 1)
    ]
