"""Bake-offs end to end against fake and mock endpoints: real eval runs, real sandbox scoring,
figures checked against what the run folders on disk say."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import httpx
import orjson
import pytest

from codeserve.client.bakeoff.plan import TargetSpec
from codeserve.client.bakeoff.results import BakeoffResults, Row, Settings
from codeserve.client.bakeoff.run import BakeoffConfig, run_bakeoff
from codeserve.client.records import load_records
from codeserve.datasets import load_benchmark
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = dict(
        benchmarks=["humaneval+"],
        n=4,
        greedy=True,
        temperature=0.8,
        top_p=0.95,
        max_tokens=64,
        concurrency=2,
        stream=False,
        task_cap=3,
        gap_threshold_pp=5.0,
        warmup=False,
    )
    values.update(overrides)
    return Settings.model_validate(values)


def quiet(message: str) -> None:
    pass


def in_flight_s(run_dir: Path) -> float:
    """Time with requests in flight, recomputed from records.jsonl: per session, first send to
    last answer."""
    spans: dict[str, list[float]] = {}
    for r in load_records(run_dir / "records.jsonl"):
        end = r.sent_at + (r.latency_s or 0.0)
        span = spans.setdefault(r.session, [r.sent_at, end])
        span[0], span[1] = min(span[0], r.sent_at), max(span[1], end)
    return sum(end - start for start, end in spans.values())


def only(results: BakeoffResults, label: str, benchmark: str) -> Row:
    (row,) = [r for r in results.rows if r.label == label and r.benchmark == benchmark]
    return row


class FakeChatEndpoint:
    """An OpenAI chat endpoint whose sampled candidates are right a chosen number of times per
    task (the first `correct[task]` of each request's n), and whose greedy answer is right for
    the first task only: pass@k has a value worked out by hand."""

    def __init__(self, data_dir: Path, correct: list[int]) -> None:
        self.tasks = load_benchmark("humaneval+", data_dir).tasks[: len(correct)]
        self.correct = correct
        self.requests: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [
                        {
                            "id": "qwen2.5-coder-0.5b-instruct",
                            "root": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                        }
                    ],
                },
            )
        body = json.loads(request.content)
        self.requests.append(body)
        question = body["messages"][0]["content"]
        index = next(i for i, t in enumerate(self.tasks) if f"def {t.entry_point}(" in question)
        task, n = self.tasks[index], body["n"]
        right = (1 if index == 0 else 0) if body["temperature"] == 0 else self.correct[index]
        good = f"```python\n{task.prompt}{task.canonical_solution}\n```"
        bad = f"```python\ndef {task.entry_point}(*args):\n    return None\n```"
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": good if i < right else bad},
                "finish_reason": "stop",
            }
            for i in range(n)
        ]
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": 10, "completion_tokens": 7 * n},
            },
        )


async def test_pass_at_k_speed_and_solved_per_minute_match_the_hand_worked_numbers(
    tmp_path: Path, data_dir: Path
) -> None:
    fake = FakeChatEndpoint(data_dir, correct=[3, 1, 0])
    config = BakeoffConfig(
        specs=[TargetSpec(base_url="http://fake:1/v1")],
        settings=settings(),
        out_dir=tmp_path / "bo",
        data_dir=data_dir,
        progress=False,
    )
    outcome = await run_bakeoff(config, transport=httpx.MockTransport(fake), log=quiet)
    results = outcome.results
    row = only(results, "qwen2.5-coder-0.5b-instruct", "humaneval+")
    assert row.style == "chat" and row.prompt_format == "chat" and row.complete and row.tasks == 3
    # Greedy: task 0 right, 1 and 2 wrong.
    assert row.pass_at_1 == pytest.approx(1 / 3) and row.pass_at_1_from == "greedy"
    # Sampled, n=4, c = 3, 1, 0: pass@1 = (3/4 + 1/4 + 0)/3; pass@4 = (1 + 1 + 0)/3.
    assert row.pass_at_k == {"pass@1": pytest.approx(1 / 3), "pass@4": pytest.approx(2 / 3)}
    # pass@2: (1 + (1 - C(3,2)/C(4,2)) + 0)/3; pass@3: (1 + (1 - C(3,3)/C(4,3)) + 0)/3.
    assert row.curve == [
        (1, pytest.approx(1 / 3)),
        (2, pytest.approx(0.5)),
        (3, pytest.approx(1.75 / 3)),
        (4, pytest.approx(2 / 3)),
    ]
    # Speed, from the sampled run's records on disk.
    sampled_dir = outcome.out_dir / row.sampled.run_dir  # type: ignore[union-attr]
    busy = in_flight_s(sampled_dir)
    assert row.speed_from == "sampled" and busy > 0
    assert row.candidates_per_s == pytest.approx(12 / busy)
    assert row.output_tokens_per_s == pytest.approx(7 * 4 * 3 / busy)
    assert row.solved_per_min == pytest.approx((2 / 3) * 3 / (busy / 60))
    assert row.time_for_k_s is not None and row.time_for_k_s <= busy
    # Published: 57.3 on HumanEval+, ours 33.3 on 3 tasks: flagged, but within a 3-task slice's noise.
    check = row.published
    assert check is not None and check.key == "qwen2.5-coder-0.5b-instruct"
    assert check.published_pct == 57.3 and check.gap_pp == pytest.approx(100 / 3 - 57.3)
    assert check.flagged and check.within_noise
    assert row.evidence is not None and row.evidence.phase == "greedy"
    assert row.evidence.categories == {"wrong answer": 2}
    assert [e.task_id for e in row.evidence.examples["wrong answer"]] == [
        "HumanEval/1",
        "HumanEval/2",
    ]
    # Same prompts for both phases; one request per task and phase (n in one request).
    assert len(fake.requests) == 6 and {r["n"] for r in fake.requests} == {1, 4}
    # The files.
    saved = BakeoffResults.model_validate(
        orjson.loads((outcome.out_dir / "bakeoff.json").read_bytes())
    )
    assert saved == results and "api_key" not in (outcome.out_dir / "bakeoff.json").read_text()
    page = (outcome.out_dir / "report.html").read_text()
    assert page.count("<svg") == 2 and "pass@4 vs sampling speed" in page and "⚠" in page
    assert 'src="http' not in page and "<link" not in page  # one self-contained file
    board = (outcome.out_dir / "leaderboard.md").read_text()
    assert "| 1 | qwen2.5-coder-0.5b-instruct | chat | 33.3 | 57.3 (-24.0 ⚠?)" in board
    assert "wrong answer: 2 (e.g. HumanEval/1, HumanEval/2" in board

    # A rerun sends nothing new and gives the same figures.
    again = await run_bakeoff(config, transport=httpx.MockTransport(fake), log=quiet)
    assert len(fake.requests) == 6
    assert only(again.results, row.label, "humaneval+").pass_at_k == row.pass_at_k


async def test_two_endpoints_same_load_speed_ttft_pareto_and_infill_only_for_fim_models(
    tmp_path: Path, data_dir: Path
) -> None:
    fast = MockConfig(model_name="mock-fast", ttft_ms=5, itl_ms=1, output_tokens=4)
    slow = MockConfig(model_name="mock-slow", ttft_ms=60, itl_ms=8, output_tokens=4)
    async with MockServer(fast) as fast_url, MockServer(slow) as slow_url:
        config = BakeoffConfig(
            specs=[TargetSpec(base_url=fast_url), TargetSpec(base_url=slow_url)],
            settings=settings(
                benchmarks=["humaneval+", "humaneval-infill-single"],
                n=3,
                task_cap=2,
                stream=True,
                warmup=True,
            ),
            out_dir=tmp_path / "bo",
            data_dir=data_dir,
            progress=False,
        )
        outcome = await run_bakeoff(config, log=quiet)
    results = outcome.results
    fast_row, slow_row = (
        only(results, "mock-fast", "humaneval+"),
        only(results, "mock-slow", "humaneval+"),
    )
    for row in (fast_row, slow_row):
        assert row.style == "base" and row.prompt_format == "humaneval" and row.complete
        assert row.pass_at_1 == 0 and row.pass_at_k == {"pass@1": 0.0, "pass@3": 0.0}
        sampled_dir = outcome.out_dir / row.sampled.run_dir  # type: ignore[union-attr]
        assert row.candidates_per_s == pytest.approx(6 / in_flight_s(sampled_dir))
        assert row.output_tokens_per_s == pytest.approx(6 * 4 / in_flight_s(sampled_dir))
        assert row.ttft_from == "greedy" and row.solved_per_min == 0
    assert (slow_row.ttft_p50_s or 0) >= 0.06 > (fast_row.ttft_p50_s or 1)
    assert (fast_row.candidates_per_s or 0) > (slow_row.candidates_per_s or 0)
    assert results.pareto["humaneval+"] == ["mock-fast"] and fast_row.pareto and not slow_row.pareto
    assert [r.label for r in results.rows if r.benchmark == "humaneval+"] == [
        "mock-fast",
        "mock-slow",
    ]
    for label in ("mock-fast", "mock-slow"):
        assert only(results, label, "humaneval-infill-single").skipped.startswith("not FIM-capable")  # type: ignore[union-attr]
    assert results.metadata.settings.concurrency == 2 and results.complete
    runs = sorted(
        p.relative_to(outcome.out_dir).as_posix() for p in (outcome.out_dir / "runs").glob("*/*")
    )
    assert runs == [
        "runs/mock-fast/humaneval+-greedy",
        "runs/mock-fast/humaneval+-t0.8-p0.95",
        "runs/mock-slow/humaneval+-greedy",
        "runs/mock-slow/humaneval+-t0.8-p0.95",
    ]


async def test_a_time_budget_stops_every_model_at_the_same_round(
    tmp_path: Path, data_dir: Path
) -> None:
    async with MockServer(MockConfig(model_name="mock-a", output_tokens=2)) as url:
        config = BakeoffConfig(
            specs=[TargetSpec(base_url=url)],
            settings=settings(n=1, greedy=False, task_cap=None, time_budget_s=0.001),
            out_dir=tmp_path / "bo",
            data_dir=data_dir,
            progress=False,
        )
        outcome = await run_bakeoff(config, log=quiet)
    assert outcome.results.metadata.rounds == [5]
    (row,) = outcome.results.rows
    assert row.tasks == 5 and row.sampled is not None and row.sampled.candidates == 5
    per_task: dict[str, int] = defaultdict(int)
    for r in load_records(outcome.out_dir / row.sampled.run_dir / "records.jsonl"):
        per_task[r.task_id] += len(r.completions)
    assert list(per_task.values()) == [1] * 5
