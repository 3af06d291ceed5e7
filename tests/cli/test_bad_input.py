"""Every subcommand with bad input, run as a user runs it: a real `codeserve` process.

What we accept:
- a user error (a bad value, a missing or unreadable file, an unreachable or refusing URL, an
  unknown benchmark, a bad models file, a port in use): a non-zero exit and exactly one stderr
  line, `codeserve: error: ...`, naming the problem;
- a malformed flag (a word where a number goes, a value outside the flag's choices, a missing
  required argument): argparse's own answer, exit 2 with its usage lines and one final
  `codeserve CMD: error: ...` line;
- never a traceback, in either case.

No engines: URLs point at a closed local port or at the mock upstream (in this process).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerThread
from tests.stack import REPO, free_port, gateway_env

CLI = [sys.executable, "-m", "codeserve.cli.main"]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with MockServerThread(MockConfig(model_name="mock-model")) as url:
        yield url


@pytest.fixture(scope="module")
def failing_url() -> Iterator[str]:
    with MockServerThread(MockConfig(model_name="mock-model", fail_rate=1.0)) as url:
        yield url


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def where(
    tmp_path: Path, data_dir: Path, mock_url: str, failing_url: str, busy_port: int
) -> dict[str, str]:
    """The placeholders the cases use."""
    file = tmp_path / "file.txt"
    file.write_text("not json\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n')
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n  - name: m\n    model: m\n"
        "    engine: {kind: upstream, urls: ['http://127.0.0.1:9']}\n"
    )
    (tmp_path / "bad.yaml").write_text("models:\n  - name: [\n")
    (tmp_path / "shape.yaml").write_text(
        "models:\n  - name: m\n    model: m\n    engine: {kind: upstream}\n"
    )
    return {
        "tmp": str(tmp_path),
        "data": str(data_dir),
        "missing": str(tmp_path / "missing"),
        "file": str(file),
        "samples": str(samples),
        "models": str(models),
        "bad_yaml": str(tmp_path / "bad.yaml"),
        "shape_yaml": str(tmp_path / "shape.yaml"),
        "closed": f"http://127.0.0.1:{free_port()}/v1",
        "port": str(free_port()),
        "busy": str(busy_port),
        "mock": mock_url + "/v1",
        "failing": failing_url + "/v1",
    }


def run(argv: str, where: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [part.format(**where) for part in argv.split()]
    return subprocess.run(
        [*CLI, *args],
        cwd=where["tmp"],
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


USER_ERRORS = [
    # serve
    ("serve --port 99999", "invalid setting port"),
    ("serve --models-file {missing} --port {port}", "cannot read models file"),
    ("serve --models-file {bad_yaml} --port {port}", "invalid YAML"),
    ("serve --models-file {shape_yaml} --port {port}", "models.0.engine.urls: Field required"),
    ("serve --models-file {models} --port {busy}", "cannot listen on 127.0.0.1:{busy}"),
    # quickstart
    ("quickstart --limit 0", "--limit must be a positive integer"),
    ("quickstart -n 0", "-n must be a positive integer"),
    ("quickstart --data-dir {missing}", "is not a directory"),
    ("quickstart --out {file}", "exists and is not a directory"),
    ("quickstart --models-file {models} --port {busy} --exit", "cannot listen on"),
    # demo-model
    ("demo-model {tmp}/m --family nosuch", "unknown demo family 'nosuch'"),
    ("demo-model {file}", "exists and is not a directory"),
    # eval
    ("eval --model m -b humaneval", "--base-url and --model are required"),
    ("eval --base-url {closed} --model m -b nosuch", "unknown benchmark 'nosuch'"),
    ("eval --base-url ftp://x --model m -b humaneval", "--base-url must be an http(s) URL"),
    (
        "eval --base-url {closed} --model m -b humaneval --data-dir {data} --out {tmp}/o",
        "cannot reach http://127.0.0.1:",
    ),
    (
        "eval --base-url {mock} --model nosuch -b humaneval --data-dir {data} --out {tmp}/o",
        "model 'nosuch' is not served",
    ),
    ("eval --oracle -b humaneval -n 0", "-n must be a positive integer"),
    ("eval --oracle -b humaneval --data-dir {missing}", "is not a directory"),
    ("eval --oracle -b humaneval --out {file}/sub", "cannot create a folder"),
    ("eval compare {missing} {missing}", "no such file"),
    ("eval compare {file} {file}", "not JSON"),
    # score
    ("score {missing} -b humaneval", "not found"),
    ("score {file} -b humaneval --data-dir {data}", "not a sample with task_id and completion"),
    ("score {samples} -b nosuch --data-dir {data}", "unknown benchmark 'nosuch'"),
    ("score {samples} -b humaneval -k 0", "-k values must be >= 1"),
    ("score {samples} -b humaneval --workers 0", "--workers must be a positive integer"),
    ("score {samples} -b humaneval --out {file}/sub", "cannot create a folder"),
    # loadtest (the first one printed a traceback before)
    (
        "loadtest --workload nosuch --base-url http://127.0.0.1:9 --rate 1 --requests 1",
        "unknown --workload 'nosuch'",
    ),
    ("loadtest --base-url {closed} --model m --rate 1 --requests 1", "cannot reach"),
    ("loadtest --base-url {closed} --rate 1 --requests 1", "cannot list models"),
    (
        "loadtest --base-url {mock} --model nosuch --rate 1 --requests 1",
        "model 'nosuch' is not served",
    ),
    ("loadtest --base-url {failing} --rate 50 --requests 2", "no request succeeded"),
    ("loadtest --base-url ftp://x --rate 1 --requests 1", "--base-url must be an http(s) URL"),
    ("loadtest --base-url {closed} --model m --rate 0 --requests 1", "rate"),
    (
        "loadtest --base-url {closed} --rate 1 --requests 1 --workload humaneval --data-dir {missing}",
        "is not a directory",
    ),
    (
        "loadtest --base-url {closed} --rate 1 --requests 1 --out {file}/sub",
        "cannot create a folder",
    ),
    (
        "loadtest --workload keystroke --base-url {closed} --concurrency 0",
        "--concurrency: Input should be greater than or equal to 1",
    ),
    (
        "loadtest --workload keystroke --base-url {closed} --rate 1",
        "no --rate, --requests or --sweep",
    ),
    ("loadtest report {missing}", "no such results file"),
    ("loadtest compare {file} {file}", "is not a loadtest results file"),
]


@pytest.mark.parametrize(("argv", "message"), USER_ERRORS, ids=[a for a, _ in USER_ERRORS])
def test_a_user_error_is_one_line(argv: str, message: str, where: dict[str, str]) -> None:
    result = run(argv, where)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("codeserve: error: ") and message.format(**where) in lines[0], lines[
        0
    ]


MALFORMED = [
    ("serve --port eighty", "serve", "argument --port: invalid int value"),
    ("serve --log-level loud", "serve", "argument --log-level: invalid choice"),
    ("quickstart -n many", "quickstart", "argument -n: invalid int value"),
    ("eval --oracle -b humaneval --limit abc", "eval", "argument --limit: invalid int value"),
    ("score", "score", "the following arguments are required: samples, --benchmark/-b"),
    (
        "loadtest --base-url {closed} --rate fast --requests 1",
        "loadtest",
        "argument --rate: invalid float value",
    ),
    ("loadtest --api grpc", "loadtest", "argument --api: invalid choice"),
]


@pytest.mark.parametrize(
    ("argv", "command", "message"), MALFORMED, ids=[a for a, _, _ in MALFORMED]
)
def test_a_malformed_flag_gets_argparse_usage(
    argv: str, command: str, message: str, where: dict[str, str]
) -> None:
    result = run(argv, where)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"usage: codeserve {command}")
    assert lines[-1].startswith(f"codeserve {command}: error: ") and message in lines[-1]


def test_the_failing_loadtest_still_prints_its_table(where: dict[str, str]) -> None:
    """Every request failed: exit 1, the table (with the error kinds) on stdout, one line on
    stderr."""
    result = run("loadtest --base-url {failing} --rate 50 --requests 2", where)
    assert result.returncode == 1
    assert "requests ok / sent            0 / 2" in result.stdout and "http_500=2" in result.stdout
    assert result.stderr == (
        "codeserve: error: no request succeeded (2 x http_500: injected failure)\n"
    )


def test_help_works_for_every_command() -> None:
    for command in ("serve", "quickstart", "demo-model", "eval", "score", "loadtest"):
        result = subprocess.run(
            [*CLI, command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "--log-level" in result.stdout, command
