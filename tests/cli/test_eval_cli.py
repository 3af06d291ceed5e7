"""`codeserve eval` and `codeserve eval compare` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from codeserve.cli.main import main
from codeserve.client.records import load_records
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerProcess, MockServerThread

REPO = Path(__file__).resolve().parents[2]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--model", "m", "-b", "humaneval"], "--base-url and --model are required"),
        (["eval", "--base-url", "http://127.0.0.1:9", "--model", "m"], "--benchmark is required"),
        (["eval", "--oracle", "-b", "nope"], "unknown benchmark 'nope'"),
        (["eval", "--base-url", "ftp://x", "--model", "m", "-b", "humaneval"], "http(s) URL"),
        (["eval", "--oracle", "-b", "humaneval", "-n", "0"], "-n must be a positive integer"),
        (["eval", "--oracle", "-b", "humaneval", "--temperature", "nan"], "--temperature"),
        (["eval", "--oracle", "-b", "humaneval", "--format", "chat"], "--format does not apply"),
        (
            [
                "eval",
                "--base-url",
                "http://127.0.0.1:9",
                "--model",
                "m",
                "-b",
                "humaneval",
                "--format",
                "mbpp-3shot",
            ],
            "does not apply to benchmark 'humaneval'",
        ),
        (["eval", "--oracle", "-b", "humaneval", "--data-dir", "/nonexistent"], "not a directory"),
        (["eval", "compare", "/nonexistent/a.json", "/nonexistent/b.json"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    data_dir: Path,
    argv: list[str],
    message: str,
) -> None:
    if "compare" not in argv:
        argv = [*argv, "--out", str(tmp_path / "o")]
        if "--data-dir" not in argv:
            argv += ["--data-dir", str(data_dir)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("codeserve: error: ") and message in err and err.count("\n") == 1


def test_unreachable_endpoint_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    code, _, err = run_cli(
        capsys,
        "eval",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "-b",
        "humaneval",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "cannot reach http://127.0.0.1:9/v1/models" in err and err.count("\n") == 1


def test_oracle_run_then_compare(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    for bench in ("humaneval", "mbpp"):
        code, out, _ = run_cli(
            capsys,
            "eval",
            "--oracle",
            "-b",
            bench,
            "--limit",
            "3",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / bench),
            "--no-progress",
        )
        assert code == 0 and "pass@1 100.0%" in out
    code, out, _ = run_cli(
        capsys,
        "eval",
        "compare",
        str(tmp_path / "humaneval" / "results.json"),
        str(tmp_path / "mbpp"),
    )  # a results.json or the --out folder
    assert code == 0 and "humaneval 1.0" in out and "mbpp test" in out and "differs" in out


def test_run_against_a_mock_endpoint_with_progress_and_key(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODESERVE_API_KEY", "sk-test")
    with MockServerThread(MockConfig(output_tokens=3)) as url:
        code, out, err = run_cli(
            capsys,
            "eval",
            "--base-url",
            url,
            "--model",
            "mock-model",
            "-b",
            "mbpp",
            "--limit",
            "2",
            "-n",
            "2",
            "--stream",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path),
        )
    assert code == 0 and "mbpp mock-model: pass@1 0.0%" in out
    assert "4/4" in err  # the tqdm bar on stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metadata"]["identity"]["prompt_format"] == "mbpp-docstring"
    assert results["metadata"]["endpoint"] == url


def test_killed_run_resumes_without_repeating_saved_samples(tmp_path: Path, data_dir: Path) -> None:
    """A real `codeserve eval` process killed mid-run; the rerun asks only for what is missing."""
    out = tmp_path / "run"
    records = out / "records.jsonl"
    with MockServerProcess(MockConfig(ttft_ms=20, itl_ms=30, output_tokens=10)) as url:
        argv = [
            sys.executable,
            "-m",
            "codeserve.cli.main",
            "eval",
            "--base-url",
            url,
            "--model",
            "mock-model",
            "-b",
            "humaneval",
            "--limit",
            "12",
            "-n",
            "2",
            "--concurrency",
            "2",
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
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                not records.exists() or len(records.read_text().splitlines()) < 4
            ):
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        saved = load_records(records)
        assert 3 <= len(saved) < 12, "the kill should land mid-run"
        before = httpx.get(f"{url}/mock/stats").json()["received"]
        rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
        asked = httpx.get(f"{url}/mock/stats").json()["received"] - before
    assert rerun.returncode == 0, rerun.stderr
    assert asked == 12 - len(saved)
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and [t["samples"] for t in results["tasks"]] == [2] * 12
