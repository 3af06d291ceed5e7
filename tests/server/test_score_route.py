"""POST /v1/score: sandboxed verdicts and pass@k from the gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from codeserve.loadtest.mock_server import MockServer
from tests.server.gateway_harness import running_gateway, upstream_models

SOLUTION_0 = """    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
"""


async def test_score_disabled_by_default() -> None:
    async with MockServer() as engine:
        async with running_gateway(upstream_models({"m": [engine]})) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                resp = await http.post(
                    "/v1/score",
                    json={"benchmark": "humaneval", "task_id": "HumanEval/0", "completions": ["x"]},
                )
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "scoring_disabled"


async def test_score_verdicts_limits_and_errors(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODESERVE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CODESERVE_SCORING_MAX_COMPLETIONS", "5")
    monkeypatch.setenv("CODESERVE_SCORING_MAX_COMPLETION_CHARS", "2000")
    async with MockServer() as engine:
        models = upstream_models({"m": [engine]})
        async with running_gateway(models, scoring_enabled=True) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                ok = await http.post(
                    "/v1/score",
                    json={
                        "benchmark": "humaneval",
                        "task_id": "HumanEval/0",
                        "completions": [SOLUTION_0, "    return None\n", "    while True: pass\n"],
                        "k": [1, 2],
                    },
                )
                unknown_task = await http.post(
                    "/v1/score",
                    json={
                        "benchmark": "humaneval",
                        "task_id": "HumanEval/999",
                        "completions": ["x"],
                    },
                )
                unknown_bench = await http.post(
                    "/v1/score", json={"benchmark": "nope", "task_id": "x", "completions": ["x"]}
                )
                too_many = await http.post(
                    "/v1/score",
                    json={
                        "benchmark": "humaneval",
                        "task_id": "HumanEval/0",
                        "completions": ["x"] * 6,
                    },
                )
                too_long = await http.post(
                    "/v1/score",
                    json={
                        "benchmark": "humaneval",
                        "task_id": "HumanEval/0",
                        "completions": ["x" * 3000],
                    },
                )
                empty = await http.post(
                    "/v1/score",
                    json={"benchmark": "humaneval", "task_id": "HumanEval/0", "completions": []},
                )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert [v["status"] for v in body["verdicts"]] == ["passed", "failed", "timeout"]
    assert body["correct"] == 1 and body["n"] == 3
    assert abs(body["pass_at_k"]["pass@1"] - 1 / 3) < 1e-9
    assert abs(body["pass_at_k"]["pass@2"] - 2 / 3) < 1e-9
    assert unknown_task.status_code == 400 and unknown_task.json()["error"]["param"] == "task_id"
    assert unknown_bench.status_code == 400
    assert unknown_bench.json()["error"]["param"] == "benchmark"
    assert too_many.status_code == 413 and too_long.status_code == 413
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "completions"
