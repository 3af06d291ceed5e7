from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeserve.cli.main import main
from codeserve.datasets import load_benchmark


def write_samples(path: Path, data_dir: Path, n_tasks: int = 4) -> None:
    tasks = load_benchmark("humaneval", data_dir).tasks[:n_tasks]
    with path.open("w") as f:
        for t in tasks:
            f.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
            f.write(json.dumps({"task_id": t.task_id, "completion": "    return None\n"}) + "\n")


def score(samples: Path, data_dir: Path, *extra: str) -> int:
    return main(
        [
            "score",
            str(samples),
            "--benchmark",
            "humaneval",
            "--data-dir",
            str(data_dir),
            "--workers",
            "1",
            *extra,
        ]
    )


def test_scores_and_writes_verdicts_and_passk(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, data_dir)
    assert score(samples, data_dir, "-k", "1,2,10") == 0
    rows = [
        json.loads(line) for line in (tmp_path / "samples_results.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 8 and {r["sample_index"] for r in rows} == set(range(8))
    assert sum(r["passed"] for r in rows) == 4
    summary = json.loads((tmp_path / "samples_results.passk.json").read_text())
    assert summary["pass_at_k"] == {"pass@1": 0.5, "pass@2": 1.0}
    out = capsys.readouterr()
    assert "pass@1 0.5000" in out.out and "not reported: pass@10" in out.out
    assert "sandbox isolation:" in out.err


def test_out_is_a_folder(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, data_dir, n_tasks=2)
    assert score(samples, data_dir, "--out", str(tmp_path / "run")) == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["passk.json", "verdicts.jsonl"]
    assert json.loads((tmp_path / "run" / "passk.json").read_text())["pass_at_k"]["pass@1"] == 0.5
    assert "deprecated" not in capsys.readouterr().err


def test_resumes_after_an_interruption(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "s.jsonl"
    write_samples(samples, data_dir)
    results = tmp_path / "r.jsonl"  # the old `--out FILE.jsonl`, still accepted
    assert score(samples, data_dir, "--out", str(results)) == 0
    assert "--out FILE.jsonl is deprecated" in capsys.readouterr().err
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # torn last line
    capsys.readouterr()
    assert score(samples, data_dir, "--out", str(results)) == 0
    assert "5 scored now, 3 resumed" in capsys.readouterr().out
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["sample_index"] for r in rows) == list(range(8))
    assert json.loads((tmp_path / "r.passk.json").read_text())["pass_at_k"]["pass@1"] == 0.5


def test_results_of_other_samples_are_not_mixed_in(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "s.jsonl"
    write_samples(samples, data_dir)
    assert score(samples, data_dir) == 0
    write_samples(samples, data_dir, n_tasks=5)
    samples.write_text(samples.read_text().replace("return None", "return 0"))
    capsys.readouterr()
    assert score(samples, data_dir) == 2
    assert "different samples" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"task_id": "HumanEval/0"}\n', "s.jsonl:1: not a sample"),
        ("not json\n", "s.jsonl:1: not a sample"),
        ('{"task_id": "HumanEval/9999", "completion": ""}\n', "not in benchmark humaneval"),
    ],
)
def test_bad_samples_get_one_line_errors(
    tmp_path: Path, data_dir: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(content)
    assert score(samples, data_dir) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codeserve: error:") and message in err and "\n" not in err


def test_bad_arguments(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "s.jsonl"
    write_samples(samples, data_dir, n_tasks=1)
    assert score(samples, data_dir, "-k", "0,x") == 2
    assert score(tmp_path / "missing.jsonl", data_dir) == 2
    assert main(["score", str(samples), "--benchmark", "nope"]) == 2
    err = capsys.readouterr().err
    assert "-k must be" in err and "not found" in err and "unknown benchmark 'nope'" in err
