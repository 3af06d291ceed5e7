"""The load tester against the mock upstream with known delays: the arithmetic of per-candidate
figures, coordinated omission in open loop, errors by type, warm-up and the SLO sweep."""

from __future__ import annotations

from typing import Any

import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from codeserve.loadtest.protocol import (
    ArrivalSpec,
    RunResult,
    RunSpec,
    SloSpec,
    SweepPoint,
    WorkloadSpec,
)
from codeserve.loadtest.sweep import auto_rates, run_once, sweep
from codeserve.loadtest.workloads import build_workload


def _spec(url: str, arrival: ArrivalSpec, **kw: Any) -> RunSpec:
    workload = kw.pop("workload", WorkloadSpec(prompt_tokens=8, max_tokens=4, pool_size=16))
    return RunSpec(base_url=url + "/v1", model="mock", arrival=arrival, workload=workload, **kw)


async def _run(spec: RunSpec) -> RunResult:
    return await run_once(
        spec, build_workload(spec.workload, spec.model, spec.seed), keep_records=True
    )


async def test_n4_per_candidate_tpot_and_candidates_per_second_match_the_delays() -> None:
    ttft, itl, tokens, users, n = 60.0, 20.0, 11, 2, 4
    async with MockServer(MockConfig(ttft_ms=ttft, itl_ms=itl)) as url:
        spec = _spec(
            url,
            ArrivalSpec(mode="closed", concurrency=users),
            num_requests=6,
            workload=WorkloadSpec(prompt_tokens=8, n=n, max_tokens=tokens),
        )
        s = (await _run(spec)).summary
    assert s.requests_ok == 6 and s.candidates_ok == 24
    assert s.tpot_ms.p50 == pytest.approx(itl, abs=2.0)  # not (e2e-ttft)/(usage total - 1) = 4.7 ms
    assert s.itl_ms.p50 == pytest.approx(itl, abs=3.0) and s.itl_ms.count == 24 * (tokens - 1)
    assert ttft - 1 <= s.ttft_ms.p50 < ttft + 15
    e2e_s = (ttft + (tokens - 1) * itl) / 1e3
    assert s.e2e_ms.p50 == pytest.approx(e2e_s * 1e3, rel=0.1)
    assert s.candidate_throughput == pytest.approx(users * n / e2e_s, rel=0.15)
    assert s.output_token_throughput == pytest.approx(s.candidate_throughput * tokens, rel=1e-6)


async def test_open_loop_against_a_slow_server_counts_queueing_from_intended_send() -> None:
    # One request at a time, 40 ms each: capacity 25/s, offered 50/s. Request k is meant to go
    # at 20k ms and ends at 40(k+1) ms, so its latency is 40 + 20k ms.
    slow = MockConfig(max_concurrency=1, ttft_ms=40, output_tokens=1)
    async with MockServer(slow) as url:
        open_loop = (
            await _run(_spec(url, ArrivalSpec(mode="constant", rate=50), num_requests=20))
        ).summary
        closed = (
            await _run(_spec(url, ArrivalSpec(mode="closed", concurrency=1), num_requests=10))
        ).summary
    assert open_loop.requests_ok == 20
    # At least the queueing arithmetic gives; more when a loaded machine slows the mock down.
    assert 0.9 * (40 + 20 * 19) <= open_loop.request_latency_ms.max < 3 * (40 + 20 * 19)
    assert open_loop.ttft_ms.p50 > 150  # a sender that waited for the server would see ~40
    assert open_loop.send_lag_ms.p99 < 20  # the sender itself kept to the schedule
    assert open_loop.request_throughput < 27  # the server's capacity, not the offered 50/s
    assert closed.request_latency_ms.p99 < 80  # closed loop hides the queue entirely


async def test_errors_are_counted_by_type() -> None:
    faulty = MockConfig(fail_rate=0.3, die_rate=0.2, die_after_tokens=1, seed=5)
    server = MockServer(faulty)
    async with server as url:
        result = await _run(_spec(url, ArrivalSpec(mode="closed", concurrency=4), num_requests=40))
    s, stats = result.summary, server.stats
    assert stats.failed > 0 and stats.died > 0
    assert s.errors == {"http_500": stats.failed, "connection_dropped": stats.died}
    assert s.error_examples["http_500"] == "injected failure"
    assert s.requests_ok == stats.completed == 40 - stats.failed - stats.died
    assert result.records is not None and all(
        r.status == 500 for r in result.records if r.error == "http_500"
    )


async def test_warmup_requests_are_sent_but_not_measured() -> None:
    async with MockServer(MockConfig(itl_ms=1)) as url:
        spec = _spec(
            url, ArrivalSpec(mode="poisson", rate=40), duration_s=0.5, warmup_s=0.25, seed=3
        )
        result = await _run(spec)
    assert result.records is not None
    warm = [r for r in result.records if r.warmup]
    assert warm and all(r.intended_s < 0.25 for r in warm)
    assert result.summary.requests == len(result.records) - len(warm)
    assert all(r.intended_s >= 0.25 for r in result.records if not r.warmup)


def test_auto_rates_doubles_then_bisects() -> None:
    next_rate = auto_rates(start=10, ceiling=1000, max_runs=10)

    def point(rate: float, ok: bool) -> SweepPoint:
        return SweepPoint.model_construct(rate=rate, meets_slo=ok, summary=None)

    assert next_rate([]) == 10
    assert next_rate([point(10, True), point(20, True)]) == 40
    assert next_rate([point(10, True), point(20, True), point(40, False)]) == 30
    assert (
        next_rate(
            [
                point(10, True),
                point(20, True),
                point(40, False),
                point(30, True),
                point(35, True),
                point(38.5, True),
            ]
        )
        is None
    )  # within 5%
    assert next_rate([point(10, False)]) == 5


async def test_sweep_finds_the_capacity_of_a_slow_server() -> None:
    # Two slots, 50 ms each: capacity 40 req/s.
    async with MockServer(MockConfig(max_concurrency=2, ttft_ms=50, output_tokens=1)) as url:
        spec = _spec(
            url,
            ArrivalSpec(mode="constant", rate=10),
            duration_s=0.5,
            slo=SloSpec(ttft_ms=150, attainment=0.9),
        )
        workload = build_workload(spec.workload, spec.model, spec.seed)
        result = await sweep(spec, lambda s: run_once(s, workload), auto_rates(10, 200, 5))
    assert result.sweep is not None
    rates = {p.rate: p.meets_slo for p in result.sweep.points}
    assert rates[10] and rates[20] and not rates[80]
    assert result.sweep.best_rate is not None and 20 <= result.sweep.best_rate < 60
