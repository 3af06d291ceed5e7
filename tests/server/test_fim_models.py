"""Per-model FIM set-up: the `fim` override, detection limits, missing tokenizers, context budget,
and the tokenizer's guard against control tokens formed by BPE merges."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from tokenizers import AddedToken, Tokenizer, models

from codeserve.common.errors import ConfigError
from codeserve.server.config import ModelsFile, parse_models_file
from codeserve.server.errors import APIError
from codeserve.server.fim.tokenizer import ModelTokenizer
from tests.server.fim_support import (
    DEAD_ENGINE,
    LAYOUTS,
    Plain,
    build_tokenizer_dirs,
    expected_fim,
    models_for,
)
from tests.server.gateway_harness import running_gateway

PREFIX = "def f(x):\n    "
SUFFIX = "\n    return y\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tokenizer_dirs(
        tmp_path_factory.mktemp("fim-models"), ["qwen2.5-coder", "starcoder", "granite-code"]
    )


def test_unknown_fim_template_is_a_config_error_naming_the_field() -> None:
    text = (
        "models:\n  - name: a\n    model: x\n    fim: starcoder3\n"
        "    engine: {kind: upstream, urls: ['http://127.0.0.1:9']}\n"
    )
    with pytest.raises(ConfigError, match=r"line 4 models\.0\.fim: .*'starcoder3'.*qwen2\.5-coder"):
        parse_models_file(text)


async def test_fim_override_none_and_named(dirs: dict[str, Path]) -> None:
    models = ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": "off",
                    "model": str(dirs["qwen2.5-coder"]),
                    "fim": "none",
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
                # StarCoder tokens render identically for granite; the name is what /v1/models shows.
                {
                    "name": "named",
                    "model": str(dirs["starcoder"]),
                    "fim": "granite",
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
                {
                    "name": "detected",
                    "model": str(dirs["granite-code"]),
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
                {
                    "name": "wrong",
                    "model": str(dirs["qwen2.5-coder"]),
                    "fim": "starcoder",
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
            ]
        }
    )
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"prompt": PREFIX, "suffix": SUFFIX}
        off = await http.post("/v1/completions/render", json={"model": "off", **body})
        assert off.status_code == 400 and "fim: none" in off.json()["error"]["message"]
        named = await http.post("/v1/completions/render", json={"model": "named", **body})
        plain = Plain(dirs["starcoder"])
        assert named.json()["prompts"][0]["token_ids"] == expected_fim(
            plain, LAYOUTS["starcoder"], PREFIX, SUFFIX
        )
        wrong = await http.post("/v1/completions/render", json={"model": "wrong", **body})
        assert wrong.status_code == 400
        assert "'<fim_prefix>'" in wrong.json()["error"]["message"]
        cards = {m["id"]: m["fim_template"] for m in (await http.get("/v1/models")).json()["data"]}
    assert cards == {"off": None, "named": "granite", "detected": "granite", "wrong": None}


async def test_unloadable_tokenizers_disable_fim_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    models = ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": "no-file",
                    "model": str(tmp_path / "empty"),
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
                {
                    "name": "hub",
                    "model": "org/not-cached",
                    "engine": {"kind": "upstream", "urls": [DEAD_ENGINE]},
                },
            ]
        }
    )
    caplog.set_level(logging.WARNING, logger="codeserve")
    async with (
        running_gateway(models, hf_hub_offline=True) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        for name, why in (("no-file", "no tokenizer.json"), ("hub", "not in the local hub cache")):
            resp = await http.post(
                "/v1/completions", json={"model": name, "prompt": "a", "suffix": "b"}
            )
            assert resp.status_code == 400
            assert resp.json()["error"]["param"] == "suffix"
            assert why in resp.json()["error"]["message"]
            dry = await http.post("/v1/completions/render", json={"model": name, "prompt": "a"})
            assert dry.status_code == 400 and dry.json()["error"]["param"] == "model"
        assert (await http.get("/health")).status_code == 200
    assert any("[hub] FIM disabled" in r.getMessage() for r in caplog.records)


async def test_context_budget(dirs: dict[str, Path]) -> None:
    """Oldest files are dropped first; a prefix+suffix that cannot fit is refused."""
    plain = Plain(dirs["qwen2.5-coder"])
    files = [{"filename": f"f{i}.py", "text": f"VALUE_{i} = {i}\n" * 6} for i in range(3)]
    core = len(expected_fim(plain, LAYOUTS["qwen2.5-coder"], PREFIX, SUFFIX))
    header = len(plain.text("repo\n")) + 2 + len(plain.text("current_file\n"))
    newest = 1 + len(plain.text(f"f2.py\n{files[2]['text']}\n"))
    middle = 1 + len(plain.text(f"f1.py\n{files[1]['text']}\n"))
    max_tokens = 8
    # Room for exactly the two newest files.
    context = core + header + newest + middle + max_tokens
    models = models_for({"q": dirs["qwen2.5-coder"]}, max_model_len=context)
    async with running_gateway(models) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"model": "q", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": max_tokens}
        resp = await http.post("/v1/completions/render", json={**body, "extra_files": files})
        (prompt,) = resp.json()["prompts"]
        assert (prompt["files_used"], prompt["files_dropped"]) == (2, 1)
        assert len(prompt["token_ids"]) == context - max_tokens
        assert "f0.py" not in prompt["text"] and "f1.py" in prompt["text"]
        tight = {**body, "max_tokens": context - core + 1}
        resp = await http.post("/v1/completions/render", json=tight)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"


def test_control_token_reached_by_bpe_merges_is_split() -> None:
    """A vocabulary whose merges build the control token `<x>` out of plain text."""
    vocab = {"a": 0, "<": 1, "x": 2, ">": 3, "<x": 4, "<x>": 5}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("<", "x"), ("<x", ">")]))
    tok.add_special_tokens([AddedToken("<x>", special=True)])
    model = ModelTokenizer(tok.to_str(), control=["<x>"])
    assert model.encode_text("a<x>a", leading_space=True) == [0, 1, 2, 3, 0]
    assert model.token_id(["<x>"]) == 5


def test_tokenizer_that_still_forms_control_tokens_is_refused() -> None:
    vocab = {"<": 0, "x": 1, "<x": 2}
    data = json.loads(Tokenizer(models.BPE(vocab=vocab, merges=[("<", "x")])).to_str())
    data["added_tokens"] = [
        {
            "id": 1,
            "content": "x",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
    ]
    model = ModelTokenizer(json.dumps(data), control=["x"])
    with pytest.raises(APIError):
        model.encode_text("x", leading_space=True)
