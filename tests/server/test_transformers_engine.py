"""The four seed families vLLM 0.32 cannot load (or loads only through GLM), served through the
gateway by real engines: a completion, a streamed completion and a `suffix` request each, with
start-up time and output speed printed (run with -s to read them).

InCoder (transformers serve, FIM) runs in CI (`vllm` marker, about a minute): it also proves the
supervision: a killed engine is restarted, and nothing survives the gateway. CodeGen, CodeT5+
(transformers serve) and CodeGeeX (vLLM) run in the slow suite.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from codeserve.server.demo_models import build_demo_model
from tests.stack import free_port, start_gateway, stop_gateway, survivors, wait_until

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n    return total\n"
SPEED_TOKENS = 64


@dataclass(frozen=True)
class Case:
    family: str
    backend: str
    fim: str | None


CASES = [
    pytest.param(Case("incoder", "transformers", "incoder"), marks=pytest.mark.vllm, id="incoder"),
    pytest.param(Case("codegen", "transformers", None), marks=pytest.mark.slow, id="codegen"),
    pytest.param(Case("codet5p", "transformers", "codet5p"), marks=pytest.mark.slow, id="codet5p"),
    pytest.param(Case("codegeex", "vllm", "codegeex4"), marks=pytest.mark.slow, id="codegeex"),
]


@dataclass
class Served:
    case: Case
    url: str
    engine_port: int
    process: object
    log: Path
    startup_s: float


def engine_processes(port: int) -> list[object]:
    """The engine server's own processes (found by its port), not the launcher above them."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if (
            str(port) in cmd
            and "codeserve.server.engines.launcher" not in cmd
            and ("serve" in cmd or "vllm.entrypoints.openai.api_server" in cmd)
        ):
            found.append(proc)
    return found


@pytest.fixture(params=CASES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    case: Case = request.param
    model = build_demo_model(tmp_path / case.family, case.family)
    engine_port, port = free_port(), free_port()
    models = tmp_path / "models.yaml"
    engine = {"kind": "managed", "port": engine_port, "dtype": "float32"}
    if case.backend == "vllm":  # auto picks vLLM for GLM: the same settings as the vLLM tests
        engine |= {"max_model_len": 2048, "enforce_eager": True}
        engine["env"] = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    models.write_text(
        json.dumps(
            {"models": [{"name": f"{case.family}-demo", "model": str(model), "engine": engine}]}
        )
    )
    log = tmp_path / "gateway.log"
    started = time.monotonic()
    process = start_gateway(models, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: model_state(url, case) == "ready", timeout=600, what="engine ready")
        yield Served(case, url, engine_port, process, log, time.monotonic() - started)
    finally:
        pids = engine_processes(engine_port)
        stop_gateway(process)  # type: ignore[arg-type]
        assert survivors(pids) == [], log.read_text()[-3000:]


def model_state(url: str, case: Case) -> str | None:
    try:
        cards = httpx.get(url + "/v1/models", timeout=5).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return next((c["state"] for c in cards if c["id"] == f"{case.family}-demo"), None)


def post(served: Served, body: dict[str, object], path: str = "/v1/completions") -> httpx.Response:
    return httpx.post(
        served.url + path, json={"model": f"{served.case.family}-demo", **body}, timeout=300
    )


def stream(served: Served, body: dict[str, object]) -> tuple[str, list[str]]:
    events: list[str] = []
    with httpx.stream(
        "POST",
        served.url + "/v1/completions",
        json={"model": f"{served.case.family}-demo", "stream": True, **body},
        timeout=300,
    ) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events and events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("error" not in c for c in chunks), chunks
    text = "".join(ch["text"] for c in chunks for ch in c.get("choices", []))
    return text, events


def completion_tokens(served: Served) -> float:
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    for line in metrics.splitlines():
        if line.startswith("codeserve_completion_tokens_total{") and (
            f'model="{served.case.family}-demo"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_family_served_end_to_end(served: Served) -> None:
    case = served.case
    # A completion, with the speed on the demo model (min_tokens: random weights may stop early).
    started = time.monotonic()
    resp = post(
        served,
        {
            "prompt": PREFIX,
            "max_tokens": SPEED_TOKENS,
            "min_tokens": SPEED_TOKENS,
            "temperature": 0,
        },
    )
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] == f"{case.family}-demo"
    assert answer["usage"]["completion_tokens"] == SPEED_TOKENS
    assert isinstance(answer["choices"][0]["text"], str)
    print(
        f"\n[{case.family}] backend={case.backend} start-up {served.startup_s:.1f}s, "
        f"{SPEED_TOKENS / elapsed:.1f} tokens/s (one request, {SPEED_TOKENS} tokens), "
        f"load average {os.getloadavg()}"
    )

    # Streamed: several chunks, OpenAI's terminator, the same model name; usage only when asked,
    # and counted in the metrics either way.
    counted = completion_tokens(served)
    text, events = stream(served, {"prompt": PREFIX, "max_tokens": 8, "min_tokens": 8, "seed": 1})
    assert not any('"usage"' in e for e in events)
    assert completion_tokens(served) == counted + 8
    _, events = stream(
        served,
        {
            "prompt": PREFIX,
            "max_tokens": 3,
            "min_tokens": 3,
            "stream_options": {"include_usage": True},
        },
    )
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 3
    assert len(events) >= 3 and all(f'"{case.family}-demo"' in e for e in events[:-1])

    # A stop string is cut from the text, as vLLM does (transformers serve would keep it).
    full = post(served, {"prompt": PREFIX, "max_tokens": 12, "min_tokens": 12, "temperature": 0})
    full_text = full.json()["choices"][0]["text"]
    if len(full_text) > 4:
        stop = full_text[2:4]
        cut = post(served, {"prompt": PREFIX, "max_tokens": 12, "temperature": 0, "stop": [stop]})
        assert cut.status_code == 200, cut.text
        assert stop not in cut.json()["choices"][0]["text"]

    body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8, "temperature": 0}
    if case.fim is None:
        refused = post(served, body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "suffix"
    else:
        dry = post(served, body, "/v1/completions/render").json()
        assert dry["fim_template"] == case.fim
        filled = post(served, body)
        assert filled.status_code == 200, filled.text
        # The engine tokenized the prompt text back to exactly the gateway's rendering.
        assert filled.json()["usage"]["prompt_tokens"] == len(dry["prompts"][0]["token_ids"])
        stream(served, body)
        if case.backend == "transformers":  # it tokenizes text itself: sentinels are refused
            sentinel = "<|mask:0|>" if case.fim == "incoder" else "<extra_id_0>"
            sneaky = post(served, {**body, "prompt": f"s = '{sentinel}'\n"})
            assert sneaky.status_code == 400, sneaky.text
            assert sneaky.json()["error"]["code"] == "tokenizer_injection"

    if case.backend == "transformers":
        refused = post(served, {"prompt": PREFIX, "max_tokens": 4, "n": 2})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "n"
        refused = post(served, {"prompt": PREFIX, "max_tokens": 4, "logprobs": 1})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "logprobs"
    if case.family == "incoder":
        restarted_after_kill(served)


def restarted_after_kill(served: Served) -> None:
    """Supervised like vLLM: a killed engine is restarted and serves again."""
    (engine,) = engine_processes(served.engine_port)
    os.kill(engine.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    wait_until(lambda: model_state(served.url, served.case) != "ready", timeout=60, what="noticed")
    wait_until(
        lambda: model_state(served.url, served.case) == "ready", timeout=300, what="restarted"
    )
    again = post(served, {"prompt": PREFIX, "max_tokens": 4, "min_tokens": 4})
    assert again.status_code == 200, again.text
    assert "engine_restarts" in httpx.get(served.url + "/metrics", timeout=10).text
