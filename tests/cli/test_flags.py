"""One flag convention across the commands (codeserve.cli.flags), and the old spellings kept
for one release as hidden aliases: each still works, prints one deprecation line, and is missing
from --help."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from codeserve.cli.main import build_parser, main
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerThread
from codeserve.loadtest.protocol import LoadtestResult


@pytest.fixture(scope="module")
def mock_url() -> str:
    with MockServerThread(MockConfig(model_name="mock-model", output_tokens=3)) as url:
        yield url


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


SHARED = {
    # command: the shared flags it must spell the same way
    "serve": ["--log-level"],
    "quickstart": ["-n", "--limit", "--data-dir", "--out", "--log-level"],
    "eval": [
        "--base-url",
        "--model",
        "--api-key",
        "-n",
        "--limit",
        "--data-dir",
        "--out",
        "--log-level",
    ],
    "loadtest": [
        "--base-url",
        "--model",
        "--api-key",
        "-n",
        "--limit",
        "--data-dir",
        "--out",
        "--log-level",
    ],
    "score": ["--data-dir", "--out", "--log-level"],
}


@pytest.mark.parametrize("command", SHARED)
def test_every_command_spells_the_shared_flags_alike(command: str) -> None:
    options = {o for a in _subparser(command)._actions for o in a.option_strings}
    assert set(SHARED[command]) <= options


ALIASES = [
    # (argv, dest, value, the deprecation line's start)
    (
        ["eval", "--endpoint", "http://h:1/v1"],
        "base_url",
        "http://h:1/v1",
        "--endpoint URL is deprecated",
    ),
    (["eval", "--n", "3"], "n", 3, "--n is deprecated"),
    (["quickstart", "--n", "3"], "n", 3, "--n is deprecated"),
    (["loadtest", "--n", "3"], "n", 3, "--n is deprecated"),
    (["loadtest", "--tasks", "5"], "limit", 5, "--tasks is deprecated"),
    (["loadtest", "--url", "http://h:1/v1"], "base_url", "http://h:1/v1", "--url is deprecated"),
    (["loadtest", "--endpoint", "chat"], "api", "chat", "--endpoint chat is deprecated"),
    (
        ["loadtest", "--endpoint", "http://h:1/v1"],
        "base_url",
        "http://h:1/v1",
        "--endpoint URL is deprecated",
    ),
    (["loadtest", "--html", "r.html"], "html", Path("r.html"), "--html is deprecated"),
    (
        ["loadtest", "report", "r.json", "--html", "r.html"],
        "html",
        Path("r.html"),
        "--html is deprecated",
    ),
]


@pytest.mark.parametrize(
    ("argv", "dest", "value", "note"), ALIASES, ids=[" ".join(a[0]) for a in ALIASES]
)
def test_a_hidden_alias_sets_the_new_flag_and_says_so_once(
    argv: list[str], dest: str, value: object, note: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert err.startswith(f"codeserve: warning: {note}") and err.count("\n") == 1
    command = _subparser(argv[0])
    if argv[1] == "report":
        command = next(
            a for a in command._actions if isinstance(a, argparse._SubParsersAction)
        ).choices["report"]
    assert argv[-2] not in command.format_help().split()  # hidden


def test_the_new_spellings_print_no_note(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        [
            "loadtest",
            "--base-url",
            "http://h:1",
            "--api",
            "chat",
            "-n",
            "2",
            "--limit",
            "3",
            "--out",
            "d",
        ]
    )
    assert (args.base_url, args.api, args.n, args.limit, args.out) == (
        "http://h:1",
        "chat",
        2,
        3,
        Path("d"),
    )
    assert capsys.readouterr().err == ""


def test_loadtest_old_spellings_still_run_end_to_end(
    mock_url: str, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--url`, `--endpoint completions`, `--n`, `--tasks`, `--out FILE.json`, `--html FILE`."""
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    assert (
        main(
            [
                "loadtest",
                "--url",
                mock_url + "/v1",
                "--endpoint",
                "completions",
                "--n",
                "2",
                "--workload",
                "humaneval",
                "--tasks",
                "2",
                "--data-dir",
                str(data_dir),
                "--rate",
                "50",
                "--requests",
                "4",
                "--out",
                str(out),
                "--html",
                str(html),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all("is deprecated" in line for line in err)
    result = LoadtestResult.model_validate_json(out.read_text())
    assert result.run.summary.requests_ok == 4 and result.run.spec.workload.n == 2
    assert result.run.spec.workload.max_tasks == 2 and html.read_text().count("<svg") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]
    assert main(["loadtest", "report", str(out), "--html", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").is_file()


def test_loadtest_base_url_without_v1_means_v1(mock_url: str, tmp_path: Path) -> None:
    assert (
        main(
            [
                "loadtest",
                "--base-url",
                mock_url,
                "--model",
                "mock-model",
                "--rate",
                "50",
                "--requests",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = LoadtestResult.model_validate_json((tmp_path / "results.json").read_text())
    assert result.run.spec.base_url == mock_url + "/v1" and result.run.summary.requests_ok == 2


def test_eval_endpoint_and_n_aliases_still_run_end_to_end(
    mock_url: str, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "eval",
                "--endpoint",
                mock_url,
                "--model",
                "mock-model",
                "-b",
                "mbpp",
                "--limit",
                "1",
                "--n",
                "2",
                "--data-dir",
                str(data_dir),
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" is deprecated")[0] for line in err] == [
        "codeserve: warning: --endpoint URL",
        "codeserve: warning: --n",
    ]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metadata"]["endpoint"] == mock_url and results["metadata"]["n"] == 2
