"""`codeserve bakeoff` and `codeserve bakeoff compare` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codeserve.cli.main import main
from codeserve.client.records import load_records
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerProcess, MockServerThread

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with MockServerThread(MockConfig(model_name="mock-model", output_tokens=3)) as url:
        yield url


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bakeoff"], "--base-url is required"),
        (["bakeoff", "--base-url", "ftp://x"], "http(s) URL"),
        (["bakeoff", "--base-url", "{mock}", "-b", "nope"], "unknown benchmark 'nope'"),
        (["bakeoff", "--base-url", "{mock}", "--format", "fancy"], "--format 'fancy'"),
        (["bakeoff", "--base-url", "{mock}", "--published", "m=gpt-9"], "--published 'm=gpt-9'"),
        (["bakeoff", "--base-url", "{mock}", "-n", "-1"], "-n must be 0"),
        (["bakeoff", "--base-url", "{mock}", "-n", "0", "--no-greedy"], "nothing to sample"),
        (["bakeoff", "--base-url", "{mock}", "--time-budget", "soon"], "--time-budget"),
        (["bakeoff", "--base-url", "{mock}", "--max-candidates", "5"], "does not cover one task"),
        (["bakeoff", "--base-url", "{mock}", "--temperature", "3"], "--temperature"),
        (["bakeoff", "--base-url", "{mock}", "--model", "other"], "'other' is not served"),
        (["bakeoff", "--base-url", "http://127.0.0.1:9/v1"], "cannot reach"),
        (["bakeoff", "--targets", "/nonexistent.yaml"], "no such file"),
        (["bakeoff", "--targets", "{bad_yaml}"], "targets.0.base_url"),
        (["bakeoff", "--targets", "{bad_yaml}", "--base-url", "{mock}"], "--targets replaces"),
        (["bakeoff", "--base-url", "{mock}", "--data-dir", "/nonexistent"], "not a directory"),
        (["bakeoff", "compare", "/nonexistent/a", "/nonexistent/b"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    data_dir: Path,
    mock_url: str,
    argv: list[str],
    message: str,
) -> None:
    bad_yaml = tmp_path / "targets.yaml"
    bad_yaml.write_text("targets:\n  - model: m\n")
    argv = [a.format(mock=mock_url, bad_yaml=bad_yaml) for a in argv]
    if "compare" not in argv:
        argv += ["--out", str(tmp_path / "o"), "--no-progress"]
        if "--data-dir" not in argv:
            argv += ["--data-dir", str(data_dir)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("codeserve: error: ") and message in err and err.count("\n") == 1


def test_killed_bakeoff_resumes_without_repeating_saved_samples(
    tmp_path: Path, data_dir: Path
) -> None:
    """A real `codeserve bakeoff` process killed while it samples; the rerun asks only for the
    candidates not saved, and the leaderboard covers every task."""
    out = tmp_path / "bo"
    greedy = out / "runs" / "mock-model" / "humaneval+-greedy" / "records.jsonl"
    sampled = out / "runs" / "mock-model" / "humaneval+-t0.8-p0.95" / "records.jsonl"
    with MockServerProcess(
        MockConfig(model_name="mock-model", ttft_ms=20, itl_ms=30, output_tokens=8)
    ) as url:
        argv = [
            sys.executable,
            "-m",
            "codeserve.cli.main",
            "bakeoff",
            "--base-url",
            url,
            "-b",
            "humaneval+",
            "--limit",
            "8",
            "-n",
            "3",
            "--concurrency",
            "1",
            "--no-warmup",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--no-progress",
        ]
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                not sampled.exists() or len(sampled.read_text().splitlines()) < 3
            ):
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        saved_greedy, saved_sampled = load_records(greedy), load_records(sampled)
        assert len(saved_greedy) == 8, "the greedy run had finished"
        assert 2 <= len(saved_sampled) < 8, "the kill should land mid-way through sampling"
        assert not (out / "bakeoff.json").exists()
        before = httpx.get(f"{url}/mock/stats").json()["received"]
        rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        asked = httpx.get(f"{url}/mock/stats").json()["received"] - before
    assert rerun.returncode == 0, rerun.stderr
    assert asked == 8 - len(saved_sampled)  # one request (n=3) per task not yet saved
    assert "Traceback" not in rerun.stderr
    per_task = Counter()
    for record in load_records(sampled):
        per_task[record.task_id] += len(record.completions)
    assert list(per_task.values()) == [3] * 8
    assert len({r.session for r in load_records(sampled)}) == 2
    results = json.loads((out / "bakeoff.json").read_text())
    (row,) = results["rows"]
    assert results["complete"] and row["tasks"] == 8 and row["sampled"]["candidates"] == 24
    assert "== humaneval+ (8 tasks) ==" in rerun.stdout and "mock-model" in rerun.stdout


def test_compare_two_bakeoffs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path, mock_url: str
) -> None:
    common = [
        "bakeoff",
        "--base-url",
        mock_url,
        "-b",
        "humaneval",
        "--limit",
        "2",
        "-n",
        "2",
        "--data-dir",
        str(data_dir),
        "--no-progress",
        "--no-warmup",
    ]
    code, out, _ = run_cli(capsys, *common, "--out", str(tmp_path / "a"))
    assert code == 0 and "== humaneval (2 tasks) ==" in out
    assert run_cli(capsys, *common, "--concurrency", "1", "--out", str(tmp_path / "b"))[0] == 0
    code, out, err = run_cli(
        capsys, "bakeoff", "compare", str(tmp_path / "a"), str(tmp_path / "b" / "bakeoff.json")
    )
    assert code == 0, err
    assert "concurrency" in out and "differs" in out
    assert "== humaneval (2 vs 2 tasks): A -> B ==" in out
    line = next(line for line in out.splitlines() if line.startswith("mock-model"))
    assert "0.0% -> 0.0% (+0.0 pp)" in line and "(x" in line


def test_list_published(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "bakeoff", "--list-published")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("qwen2.5-coder-0.5b-instruct"))
    assert line.split()[1:4] == ["61.6", "57.3", "52.4"] and "Qwen2.5-Coder" in line
