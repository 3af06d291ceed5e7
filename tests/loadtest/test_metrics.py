"""Summary arithmetic on hand-made records."""

from __future__ import annotations

import pytest

from codeserve.common.stats import percentile
from codeserve.loadtest.metrics import summarize, timeline
from codeserve.loadtest.protocol import (
    ArrivalSpec,
    CandidateRecord,
    LoadtestRecord,
    RunSpec,
    SloSpec,
)


def _spec(slo: SloSpec | None = None) -> RunSpec:
    return RunSpec(
        base_url="http://127.0.0.1:1/v1",
        model="m",
        arrival=ArrivalSpec(rate=2),
        num_requests=3,
        slo=slo or SloSpec(),
    )


def _record(
    seq: int, intended: float, ttft: float, e2e: float, tokens: int, **kw: object
) -> LoadtestRecord:
    cands = [
        CandidateRecord(
            index=i,
            ttft_s=ttft,
            e2e_s=e2e,
            tokens=tokens,
            chunks=tokens,
            itl_s=[(e2e - ttft) / (tokens - 1)] * (tokens - 1),
            finish_reason="length",
        )
        for i in range(2)
    ]
    return LoadtestRecord(
        seq=seq,
        intended_s=intended,
        sent_s=intended + 0.001,
        done_s=intended + e2e,
        n=2,
        candidates=cands,
        **kw,
    )


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([5], 99) == 5


def test_summary_excludes_warmup_and_counts_candidates_and_slo() -> None:
    records = [
        _record(0, 0.0, 5.0, 9.0, 5, warmup=True),  # would dominate every figure
        _record(1, 1.0, 0.1, 0.5, 5),
        _record(2, 1.5, 0.3, 1.5, 5),
        LoadtestRecord(
            seq=3, intended_s=2.0, sent_s=2.0, done_s=2.2, n=2, status=503, error="http_503"
        ),
    ]
    s = summarize(records, _spec(SloSpec(ttft_ms=200)))
    assert s.requests == 3 and s.requests_ok == 2 and s.candidates_ok == 4
    assert s.errors == {"http_503": 1}
    assert s.duration_s == pytest.approx(
        2.0
    )  # first measured intended 1.0 .. last done 3.0 (seq 2)
    assert s.candidate_throughput == pytest.approx(4 / 2.0)
    assert s.output_token_throughput == pytest.approx(20 / 2.0)
    assert s.ttft_ms.p50 == pytest.approx(200.0) and s.ttft_ms.max == pytest.approx(300.0)
    assert s.tpot_ms.mean == pytest.approx((100 + 300) / 2)
    assert s.itl_ms.count == 16
    assert s.send_lag_ms.max == pytest.approx(1.0) and s.send_lag_ms.count == 3
    assert s.goodput == pytest.approx(1 / 2.0)  # only seq 1 meets TTFT <= 200 ms
    assert s.slo_attainment == pytest.approx(1 / 3)  # failures count against attainment
    assert len(s.ttft_ms.quantiles) == 101


def test_timeline_buckets_finished_candidates() -> None:
    points = timeline([_record(0, 0.0, 0.1, 0.5, 3), _record(1, 0.9, 0.1, 0.5, 3)], bucket_s=1.0)
    assert [p.candidates for p in points] == [2.0, 2.0]
    assert [p.output_tokens for p in points] == [6.0, 6.0]
