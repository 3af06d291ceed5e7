"""FIM rendering of the sentinel-infilling families through POST /v1/completions/render:
InCoder's causal masking, CodeT5+'s span infill and CodeGeeX4's chat-framed infilling,
token-exact.

Expected ids come straight from the demo tokenizer.json with the `tokenizers` library, in the
layout of InCoder's own infill code (github.com/dpfried/incoder, `infill()` with
extra_sentinel): `<|endoftext|>` (BOS, added by the tokenizer), the prefix, `<|mask:0|>`,
the suffix, `<|mask:1|>`, `<|mask:0|>`; the model then writes the middle and `<|endofmask|>`.
CodeT5+ 220M/770M (model card: `def print_hello_world():<extra_id_0>`): the encoder reads
`<s>` prefix `<extra_id_0>` suffix `</s>` and the decoder answers the span, closed by
`<extra_id_1>`.
CodeGeeX4 (its repository's guides/Infilling_guideline.md): a user turn `<|user|>` with the
lines `###PATH:`, `###LANGUAGE:` (blank when unknown) and `###MODE:` (BLOCK, the default), then
`<|code_suffix|>` suffix `<|code_prefix|>` prefix `<|code_middle|>`, then `<|assistant|>` and a
newline; GLM-4 prompts open with `[gMASK]<sop>`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.server.fim_support import Plain, build_tokenizer_dirs, models_for
from tests.server.gateway_harness import running_gateway

PREFIX = 'def add(a, b):\n    """Add two numbers."""\n    '
SUFFIX = "\n    return total\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = build_tokenizer_dirs(
        tmp_path_factory.mktemp("masking-tok"), ["incoder", "codet5p", "codegeex"]
    )
    # The template is CodeT5+'s only for T5 checkpoints (config.json model_type).
    (dirs["codet5p"] / "config.json").write_text(json.dumps({"model_type": "t5"}))
    return dirs


@pytest.fixture(scope="module")
async def gateway(dirs: dict[str, Path]) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_gateway(models_for(dirs)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


def incoder_ids(plain: Plain, prefix: str, suffix: str) -> list[int]:
    mask0, mask1 = plain.id("<|mask:0|>"), plain.id("<|mask:1|>")
    return [
        plain.id("<|endoftext|>"),
        *plain.text(prefix),
        mask0,
        *plain.text(suffix, leading_space=False),
        mask1,
        mask0,
    ]


async def test_incoder_render_is_token_exact(
    gateway: httpx.AsyncClient, dirs: dict[str, Path]
) -> None:
    plain = Plain(dirs["incoder"])
    resp = await gateway.post(
        "/v1/completions/render",
        json={"model": "incoder", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 32},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fim_template"] == "incoder"
    (prompt,) = body["prompts"]
    assert prompt["token_ids"] == incoder_ids(plain, PREFIX, SUFFIX)
    assert prompt["text"] == f"<|endoftext|>{PREFIX}<|mask:0|>{SUFFIX}<|mask:1|><|mask:0|>"
    assert body["stop_token_ids"][0] == plain.id("<|endofmask|>")
    assert plain.id("<|mask:1|>") in body["stop_token_ids"]


@pytest.mark.parametrize("spelling", ["<|mask:0|>", "<|mask:1|>", "<|endofmask|>"])
async def test_incoder_sentinels_in_code_stay_text(
    gateway: httpx.AsyncClient, dirs: dict[str, Path], spelling: str
) -> None:
    plain = Plain(dirs["incoder"])
    prefix, suffix = f"s = '{spelling}'\n", f"t = '{spelling}'\n"
    resp = await gateway.post(
        "/v1/completions/render",
        json={"model": "incoder", "prompt": prefix, "suffix": suffix, "max_tokens": 8},
    )
    assert resp.status_code == 200, resp.text
    ids = resp.json()["prompts"][0]["token_ids"]
    assert ids == incoder_ids(plain, prefix, suffix)
    # Exactly the template's three sentinels: the ones in the code were encoded as text.
    sentinels = {plain.id("<|mask:0|>"), plain.id("<|mask:1|>"), plain.id("<|endofmask|>")}
    assert sum(1 for i in ids if i in sentinels) == 3


async def test_codet5p_span_render_is_token_exact(
    gateway: httpx.AsyncClient, dirs: dict[str, Path]
) -> None:
    plain = Plain(dirs["codet5p"])
    resp = await gateway.post(
        "/v1/completions/render",
        json={"model": "codet5p", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 32},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fim_template"] == "codet5p"
    (prompt,) = body["prompts"]
    assert prompt["token_ids"] == [
        plain.id("<s>"),
        *plain.text(PREFIX),
        plain.id("<extra_id_0>"),
        *plain.text(SUFFIX, leading_space=False),
        plain.id("</s>"),
    ]
    assert body["stop_token_ids"] == [plain.id("<extra_id_1>"), plain.id("</s>")]
    # Sentinels in the code stay text.
    sneaky = await gateway.post(
        "/v1/completions/render",
        json={"model": "codet5p", "prompt": "a = '<extra_id_0>'\n", "suffix": "", "max_tokens": 8},
    )
    ids = sneaky.json()["prompts"][0]["token_ids"]
    assert ids.count(plain.id("<extra_id_0>")) == 1


def codegeex_ids(plain: Plain, prefix: str, suffix: str) -> list[int]:
    return [
        plain.id("[gMASK]"),
        plain.id("<sop>"),
        plain.id("<|user|>"),
        *plain.text("\n###PATH:current_file\n###LANGUAGE:\n###MODE:BLOCK\n", leading_space=False),
        plain.id("<|code_suffix|>"),
        *plain.text(suffix, leading_space=False),
        plain.id("<|code_prefix|>"),
        *plain.text(prefix),
        plain.id("<|code_middle|>"),
        plain.id("<|assistant|>"),
        *plain.text("\n", leading_space=False),
    ]


async def test_codegeex4_render_is_token_exact(
    gateway: httpx.AsyncClient, dirs: dict[str, Path]
) -> None:
    plain = Plain(dirs["codegeex"])
    resp = await gateway.post(
        "/v1/completions/render",
        json={"model": "codegeex", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 32},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fim_template"] == "codegeex4"
    (prompt,) = body["prompts"]
    assert prompt["token_ids"] == codegeex_ids(plain, PREFIX, SUFFIX)
    assert prompt["text"] == (
        "[gMASK]<sop><|user|>\n###PATH:current_file\n###LANGUAGE:\n###MODE:BLOCK\n"
        f"<|code_suffix|>{SUFFIX}<|code_prefix|>{PREFIX}<|code_middle|><|assistant|>\n"
    )
    assert body["stop_token_ids"] == [
        plain.id(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>", "<|assistant|>")
    ]


@pytest.mark.parametrize("spelling", ["<|code_middle|>", "<|user|>", "<|assistant|>"])
async def test_codegeex4_control_tokens_in_code_stay_text(
    gateway: httpx.AsyncClient, dirs: dict[str, Path], spelling: str
) -> None:
    plain = Plain(dirs["codegeex"])
    prefix, suffix = f"s = '{spelling}'\n", f"t = '{spelling}'\n"
    resp = await gateway.post(
        "/v1/completions/render",
        json={"model": "codegeex", "prompt": prefix, "suffix": suffix, "max_tokens": 8},
    )
    assert resp.status_code == 200, resp.text
    ids = resp.json()["prompts"][0]["token_ids"]
    assert ids == codegeex_ids(plain, prefix, suffix)
    assert ids.count(plain.id(spelling)) == 1  # the template's own; the code's stayed text
