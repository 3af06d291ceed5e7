"""The bake-off's arithmetic and decisions, on numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from codeserve.client.bakeoff.evidence import categorize
from codeserve.client.bakeoff.metrics import (
    headline_ks,
    pareto_front,
    pass_at_ks,
    pass_curve,
    solved_per_minute,
    time_for_candidates,
)
from codeserve.client.bakeoff.plan import (
    detect_style,
    load_targets_file,
    next_round_fits,
    parse_assignments,
    parse_duration,
    resolve_targets,
    round_limits,
    task_cap,
)
from codeserve.client.bakeoff.published import BY_KEY, check_gap, match
from codeserve.client.protocol import EvalRecord, TaskResult
from codeserve.client.run_scoring import ScoredSample
from codeserve.common.errors import CliError


def tasks(*counts: tuple[int, int]) -> list[TaskResult]:
    return [
        TaskResult(task_id=f"T/{i}", samples=n, correct=c, pass_at_k={})
        for i, (n, c) in enumerate(counts)
    ]


def test_unbiased_pass_at_k_by_hand() -> None:
    # n=5 each; c = 0, 1, 5. pass@2 of c=1: 1 - C(4,2)/C(5,2) = 1 - 6/10.
    run = tasks((5, 0), (5, 1), (5, 5))
    got = pass_at_ks(run, [1, 2, 5])
    assert got["pass@1"] == pytest.approx((0 + 1 / 5 + 1) / 3)
    assert got["pass@2"] == pytest.approx((0 + 0.4 + 1) / 3)
    assert got["pass@5"] == pytest.approx((0 + 1 + 1) / 3)
    # c=3 of n=4: pass@2 is 1 (n - c < k); c=1 of 4: 1 - C(3,2)/C(4,2) = 1/2.
    assert pass_at_ks(tasks((4, 3), (4, 1)), [2]) == {"pass@2": pytest.approx(0.75)}


def test_pass_at_k_only_where_every_task_has_k_samples() -> None:
    assert set(pass_at_ks(tasks((10, 1), (4, 1)), [1, 10])) == {"pass@1"}
    assert pass_at_ks(tasks((3, 1), (0, 0)), [1]) == {}  # a task without samples: no figure
    assert headline_ks(1) == [1] and headline_ks(5) == [1, 5] and headline_ks(10) == [1, 10]
    assert headline_ks(50) == [1, 10, 50]
    curve = pass_curve(tasks((4, 2), (4, 0)), 4)
    assert [k for k, _ in curve] == [1, 2, 3, 4]
    assert [v for _, v in curve] == pytest.approx([0.25, (1 - 1 / 6) / 2, 0.5, 0.5])


def test_solved_per_minute_is_expected_solved_tasks_over_minutes_in_flight() -> None:
    # pass@k 0.5 over 10 tasks = 5 tasks solved, in 30 s = half a minute: 10 per minute.
    assert solved_per_minute(0.5, 10, 30.0) == pytest.approx(10.0)
    assert solved_per_minute(None, 10, 30.0) is None and solved_per_minute(0.5, 10, 0.0) is None


def record(task: str, session: str, sent: float, latency: float, n: int = 2) -> EvalRecord:
    return EvalRecord(
        task_id=task,
        session=session,
        n=n,
        texts=["x"] * n,
        completions=["x"] * n,
        sent_at=sent,
        latency_s=latency,
        status=200,
    )


def test_time_for_candidates_spans_a_tasks_requests_and_skips_the_gap_between_sessions() -> None:
    records = [
        record("A", "s1", 100.0, 2.0),
        record("A", "s1", 101.0, 3.0),  # 100 -> 104: 4 s
        record("B", "s1", 100.0, 1.0),  # 1 s, then killed; the rerun adds 2 s an hour later
        record("B", "s2", 3700.0, 2.0),
        EvalRecord(task_id="C", session="s1", n=2, sent_at=100.0, latency_s=9.0, error="boom"),
    ]
    assert sorted(time_for_candidates(records)) == [3.0, 4.0]


def test_pareto_front_keeps_models_nothing_beats_on_both_axes() -> None:
    points = {
        "fast": (100.0, 0.2),
        "good": (10.0, 0.6),
        "both-worse": (9.0, 0.5),
        "middle": (50.0, 0.4),
        "tie-slower": (50.0, 0.3),
    }
    assert pareto_front(points) == ["good", "middle", "fast"]
    assert pareto_front({"a": (1.0, 0.5), "b": (1.0, 0.5)}) == ["a", "b"]  # equal: neither beats


def test_gap_flag_against_published_pass_at_1() -> None:
    full = check_gap(57.3, 0.40, 164)  # a whole-benchmark shortfall of 17 points
    assert full.flagged and not full.within_noise and full.gap_pp == pytest.approx(-17.3)
    assert full.stderr_pp == pytest.approx(100 * math.sqrt(0.573 * 0.427 / 164))
    assert not check_gap(57.3, 0.55, 164).flagged  # 2.3 points under: not flagged
    assert not check_gap(57.3, 0.70, 164).flagged  # above: not a setup problem
    small = check_gap(57.3, 0.45, 10)  # 12 points under on 10 tasks: flagged, but noise-sized
    assert small.flagged and small.within_noise
    assert check_gap(57.3, 0.45, 164, threshold_pp=15).flagged is False


def test_published_rows_match_served_names_and_checkpoints() -> None:
    assert match("qwen2.5-coder-0.5b-instruct").key == "qwen2.5-coder-0.5b-instruct"  # type: ignore[union-attr]
    assert match("coder", "Qwen/Qwen2.5-Coder-1.5B").key == "qwen2.5-coder-1.5b"  # type: ignore[union-attr]
    assert match("deepseek-ai/deepseek-coder-1.3b-instruct").key == "deepseek-coder-1.3b-instruct"  # type: ignore[union-attr]
    assert match("deepseek-ai/deepseek-coder-1.3b-base").key == "deepseek-coder-1.3b-base"  # type: ignore[union-attr]
    assert match("qwen-demo", "/tmp/demo") is None and match("phi-1.5") is None
    qwen = BY_KEY["qwen2.5-coder-0.5b-instruct"]
    assert qwen.scores == {"humaneval": 61.6, "humaneval+": 57.3, "mbpp": 52.4}
    assert "Qwen2.5-Coder" in qwen.source


def test_prompt_style_is_detected_from_the_name() -> None:
    assert detect_style("qwen2.5-coder-0.5b-instruct", None)[0] == "chat"
    assert detect_style("m", "HuggingFaceTB/SmolLM2-135M-Instruct")[0] == "chat"
    assert detect_style("codegemma-2b-it", None)[0] == "chat"
    assert detect_style("qwen-demo", "/tmp/qwen-demo")[0] == "base"
    assert detect_style("deepseek-coder-1.3b-base", None)[0] == "base"
    assert parse_assignments(["chat", "m=base"], "--format", ["auto", "base", "chat"]) == {
        None: "chat",
        "m": "base",
    }
    with pytest.raises(CliError, match="--format 'x'"):
        parse_assignments(["x"], "--format", ["auto", "base", "chat"])


def test_budgets() -> None:
    # 200 candidates, 2 benchmarks, 9 sampled + 1 greedy per task: 10 tasks each.
    assert task_cap(None, 200, 9, True, 2) == 10
    assert task_cap(4, 200, 9, True, 2) == 4 and task_cap(None, None, 9, True, 2) is None
    with pytest.raises(CliError, match="does not cover one task"):
        task_cap(None, 10, 9, True, 2)
    assert round_limits(None, 164, timed=False) == [None]
    assert round_limits(30, 164, timed=False) == [30]
    assert round_limits(None, 164, timed=True) == [5, 10, 20, 40, 80, 160, 164]
    assert round_limits(12, 164, timed=True) == [5, 10, 12]
    # Last round: 20 s for 10 new tasks; the next adds 20 tasks: 40 s.
    assert next_round_fits(20.0, 10, 20, 45.0) and not next_round_fits(20.0, 10, 20, 35.0)
    assert parse_duration("90") == 90 and parse_duration("20m") == 1200
    assert parse_duration("1.5h") == 5400
    with pytest.raises(CliError, match="--time-budget"):
        parse_duration("soon")


def test_failure_causes() -> None:
    def sample(completion: str, result: str) -> ScoredSample:
        return ScoredSample(task_id="T", completion=completion, passed=False, result=result)

    assert categorize(sample(" \n", "failed: wrong output None"), "stop") == "empty answer"
    assert (
        categorize(sample("def g(): pass", "failed: wrong output None"), "stop", "f")
        == "no function defined"
    )
    assert (
        categorize(sample("def f(:", "error: SyntaxError: invalid"), "length")
        == "cut at max_tokens"
    )
    assert categorize(sample("def f(:", "error: SyntaxError: invalid"), "stop") == "syntax error"
    assert categorize(sample("x", "error: base input 0: NameError: name 'h'"), "stop").startswith(
        "NameError"
    )
    assert categorize(sample("x", "timeout: time limit exceeded"), "stop") == "timeout"
    assert categorize(sample("x", "failed: base input 0: wrong output 0"), "stop") == "wrong answer"
    assert categorize(sample("x", "error: ZeroDivisionError"), "stop") == "runtime error"


async def test_targets_file_labels_styles_and_published_choices(tmp_path: Path) -> None:

    def served(request: httpx.Request) -> httpx.Response:
        card = {
            "id": "coder",
            "root": "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            "fim_template": "qwen2.5-coder",
        }
        return httpx.Response(200, json={"object": "list", "data": [card]})

    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "  - {base_url: 'http://a:8000', model: coder}\n"
        "  - {base_url: 'http://b:8000/v1', model: coder, format: base, published: none}\n"
    )
    targets = await resolve_targets(
        load_targets_file(path),
        styles={},
        published={},
        api_key=None,
        transport=httpx.MockTransport(served),
    )
    a, b = targets
    assert (a.label, a.base_url, b.label) == ("coder@a:8000", "http://a:8000/v1", "coder@b:8000")
    assert a.style == "chat" and a.style_source.startswith("auto") and a.fim
    assert (
        a.published_key == "qwen2.5-coder-1.5b-instruct" and a.published_source == "matched by name"
    )
    assert (b.style, b.style_source, b.published_key) == ("base", "targets file", None)
    # --format MODEL=STYLE beats the file's format and --format for every model.
    again = await resolve_targets(
        load_targets_file(path),
        styles={None: "base", "coder": "chat"},
        published={},
        api_key=None,
        transport=httpx.MockTransport(served),
    )
    assert [t.style for t in again] == ["chat", "chat"]
