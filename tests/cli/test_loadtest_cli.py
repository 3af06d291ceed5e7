"""`codeserve loadtest` end to end against the mock: table, results JSON, HTML with inline SVG,
compare and report, and one-line errors for bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from codeserve.cli.main import main
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerThread
from codeserve.loadtest.protocol import LoadtestResult


@pytest.fixture(scope="module")
def mock_url() -> str:
    with MockServerThread(MockConfig(model_name="mock-model", ttft_ms=10, itl_ms=2)) as url:
        yield url


def _svgs(html: str) -> list[ET.Element]:
    out, start = [], 0
    while (i := html.find("<svg", start)) >= 0:
        end = html.index("</svg>", i) + len("</svg>")
        out.append(ET.fromstring(html[i:end]))
        start = end
    return out


def _has_data_line(svg: ET.Element) -> bool:
    """common.charts gives each drawn data line the id `<chart>-line-<i>`."""
    return any("-line-" in (e.get("id") or "") for e in svg.iter())


def test_run_writes_results_and_report_into_out_and_compare_flags_regressions(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    common = [
        "loadtest",
        "--base-url",
        mock_url + "/v1",
        "--requests",
        "12",
        "-n",
        "2",
        "--max-tokens",
        "5",
        "--fim-fraction",
        "0.5",
        "--slo-ttft-ms",
        "1000",
    ]
    assert main([*common, "--rate", "40", "--out", str(fast), "--save-records"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "TTFT" in printed and "candidates/s" in printed and "goodput" in printed
    assert captured.err == ""  # the new spellings: no deprecation notes
    result = LoadtestResult.model_validate_json((fast / "results.json").read_text())
    assert result.run.spec.model == "mock-model"  # discovered through /v1/models
    assert result.run.summary.requests_ok == 12 and result.run.summary.candidates_ok == 24
    assert result.run.records is not None and any(r.fim for r in result.run.records)
    svgs = _svgs((fast / "report.html").read_text())
    assert len(svgs) == 3 and all(_has_data_line(s) for s in svgs)

    httpx.post(mock_url + "/mock/config", json={"ttft_ms": 80}).raise_for_status()
    try:
        assert main([*common, "--rate", "40", "--out", str(slow)]) == 0
    finally:
        httpx.post(mock_url + "/mock/config", json={"ttft_ms": 10}).raise_for_status()
    capsys.readouterr()
    # compare and report take the --out folder or its results.json
    assert (
        main(["loadtest", "compare", str(fast), str(fast / "results.json"), "--threshold", "5"])
        == 0
    )
    assert main(["loadtest", "compare", str(fast), str(slow), "--threshold", "5"]) == 1
    out = capsys.readouterr().out
    assert "worse" in out and "fast" in out and "slow" in out
    assert main(["loadtest", "report", str(fast), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.html").read_text().count("<svg") == 3
    assert not (tmp_path / "again" / "results.json").exists()


def test_sweep_report_has_the_latency_vs_rate_plot(mock_url: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "loadtest",
                "--base-url",
                mock_url + "/v1",
                "--model",
                "mock-model",
                "--sweep",
                "--sweep-start",
                "20",
                "--sweep-runs",
                "2",
                "--duration",
                "0.3",
                "--slo-e2e-ms",
                "500",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = LoadtestResult.model_validate_json((out / "results.json").read_text())
    assert result.sweep is not None and [p.rate for p in result.sweep.points] == [20, 40]
    assert result.sweep.best_rate == 40
    assert "Latency vs offered rate" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5", "--requests", "3"], "--base-url is required"),
        (["--base-url", "U", "--requests", "3"], "choose the traffic"),
        (["--base-url", "U", "--rate", "5"], "choose the length"),
        (
            ["--base-url", "U", "--model", "m", "--rate", "3", "--requests", "3"],
            "--base-url must be an http(s) URL",
        ),
        (["--base-url", "http://h/v1", "--model", "m", "--rate", "0", "--requests", "3"], "rate"),
        (
            [
                "--base-url",
                "http://h/v1",
                "--model",
                "m",
                "--rate",
                "5",
                "--requests",
                "3",
                "-n",
                "101",
            ],
            "n:",
        ),
        (
            [
                "--base-url",
                "http://h/v1",
                "--model",
                "m",
                "--rate",
                "5",
                "--requests",
                "3",
                "--sweep",
            ],
            "--sweep needs an SLO",
        ),
        (
            ["--base-url", "http://127.0.0.1:9/v1", "--rate", "5", "--requests", "3"],
            "cannot list models",
        ),
        (["compare", "/nonexistent.json", "/nonexistent.json"], "no such results file"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codeserve: error:") and "\n" not in err and message in err
