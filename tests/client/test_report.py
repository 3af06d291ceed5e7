"""Markdown/HTML reports and side-by-side comparison, from results objects."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from codeserve.client.compare import compare_files, render_comparison
from codeserve.client.protocol import (
    EvalResults,
    Histogram,
    LatencySummary,
    RunIdentity,
    RunMetadata,
    TaskResult,
    Throughput,
)
from codeserve.client.report import render_html, render_markdown, write_reports
from codeserve.common.charts import histogram_chart
from codeserve.common.errors import CliError
from codeserve.common.stats import Distribution


def make_results(
    model: str = "m", p1: float = 0.5, correct: tuple[int, int] = (1, 0), cps: float = 4.0
) -> EvalResults:
    identity = RunIdentity(
        benchmark="humaneval",
        dataset_sha256="b796127e635a67f9",
        model=model,
        prompt_format="humaneval",
        temperature=0.2,
        top_p=0.95,
        max_tokens=64,
    )
    meta = RunMetadata(
        identity=identity,
        endpoint="http://127.0.0.1:1/v1",
        dataset_name="humaneval",
        dataset_version="1.0",
        n=2,
        limit=2,
        tasks=2,
        stream=True,
        concurrency=4,
        max_n_per_request=None,
        tool_version="0.1.0",
        started_at="t0",
        finished_at="t1",
    )
    e2e = Distribution(count=4, p50=0.5, p90=0.9, p99=0.99, mean=0.6)
    return EvalResults(
        metadata=meta,
        pass_at_k={"pass@1": p1},
        complete=True,
        tasks=[
            TaskResult(
                task_id="HumanEval/0",
                samples=2,
                correct=correct[0],
                pass_at_k={"pass@1": correct[0] / 2},
            ),
            TaskResult(
                task_id="HumanEval/1",
                samples=2,
                correct=correct[1],
                pass_at_k={"pass@1": correct[1] / 2},
                first_failure="failed: AssertionError <oops> | x",
            ),
        ],
        latency=LatencySummary(
            ttft_s=Distribution(count=4, p50=0.1, p90=0.2, p99=0.3, mean=0.15),
            e2e_s=e2e,
            e2e_histogram=Histogram(edges=[0.4, 0.7, 1.0], counts=[3, 1]),
            ttft_histogram=Histogram(edges=[0.1, 0.3], counts=[4]),
        ),
        throughput=Throughput(
            duration_s=2.0,
            requests=4,
            failed_requests=0,
            candidates=8,
            output_tokens=100,
            candidates_per_s=cps,
            output_tokens_per_s=50.0,
        ),
    )


def test_markdown_has_every_section_and_figure() -> None:
    text = render_markdown(make_results())
    for needle in (
        "# Eval: m on humaneval",
        "| prompt format | humaneval |",
        "| pass@1 | 50.0% |",
        "| time to first token | 4 | 0.100 | 0.200 | 0.300 | 0.150 |",
        "| candidates/s | 4.00 |",
        "| HumanEval/1 | 0 / 2 | 0.0% |",
        "\\| x",
    ):
        assert needle in text, needle


def test_html_is_well_formed_with_escaped_text_and_svg_charts(tmp_path: Path) -> None:
    md, page = write_reports(make_results(), tmp_path)
    assert md.read_text().startswith("# Eval")
    doc = page.read_text()
    assert "&lt;oops&gt;" in doc and "<oops>" not in doc
    root = ET.fromstring(doc.removeprefix("<!doctype html>"))
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) == 3  # pass@k, e2e histogram, ttft histogram
    bars = [
        g
        for g in svgs[1].iter("{http://www.w3.org/2000/svg}g")
        if re.search(r"-bar-\d+$", g.get("id", ""))
    ]
    heights = [_height(bar) for bar in bars]
    assert len(bars) == 2 and heights[0] == pytest.approx(3 * heights[1], abs=0.5)
    assert "pass@k" in doc and "End-to-end latency per request" in doc  # titles stay text


def _height(bar: ET.Element) -> float:
    """Height of the rectangle a bar's path draws."""
    path = bar.find("{http://www.w3.org/2000/svg}path")
    assert path is not None
    ys = [float(y) for y in re.findall(r"[\d.]+ ([\d.]+)", path.get("d", ""))]
    return max(ys) - min(ys)


def test_empty_histogram_renders_a_placeholder() -> None:
    assert "no data" in histogram_chart("e2e", [], [], "seconds")
    assert "<svg" in render_html(make_results().model_copy(update={"pass_at_k": {}}))


def test_compare_shows_both_runs_deltas_and_task_flips(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(make_results().model_dump_json())
    b.write_text(make_results(model="m2", p1=0.75, correct=(1, 2), cps=5.0).model_dump_json())
    text = compare_files(a, b)
    lines = text.splitlines()
    assert any(line.split() == ["model", "m", "m2", "differs"] for line in lines)
    assert any(line.split() == ["pass@1", "50.0%", "75.0%", "+25.0", "pp"] for line in lines)
    assert any(line.split() == ["candidates/s", "4.00", "5.00", "x1.25"] for line in lines)
    assert "changed: 1 (better in B: 1, worse: 0)" in text
    assert "HumanEval/1: 0/2 -> 2/2 (+100 pp)" in text
    same = render_comparison(make_results(), make_results())
    assert "differs" not in same and "changed: 0" in same


def test_compare_rejects_bad_files_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(make_results().model_dump_json())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pass_at_k": {}}))
    for path, message in (
        (tmp_path / "none.json", "no such file"),
        (bad, "not a codeserve results file"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(CliError, match=message) as caught:
            compare_files(good, path)
        assert "\n" not in str(caught.value)
