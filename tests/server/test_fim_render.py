"""FIM rendering per family through POST /v1/completions/render (tokenizers only, no engine).

Expected prompts are built in the test straight from each family's tokenizer.json with the
`tokenizers` library, following the formats in shared/reference.md §1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tokenizers import Tokenizer

from tests.server.fim_support import (
    LAYOUTS,
    NO_FIM,
    Plain,
    expected_fim,
    models_for,
    tokenizer_dirs,
)
from tests.server.gateway_harness import running_gateway

PREFIX = 'def add(a, b):\n    """Add two numbers."""\n    '
SUFFIX = "\n    return total\n"


@pytest.fixture(scope="module")
async def gateway(tokenizer_dirs: dict[str, Path]) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_gateway(models_for(tokenizer_dirs)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def render(http: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await http.post("/v1/completions/render", json=body)


@pytest.mark.parametrize("family", list(LAYOUTS))
async def test_render_matches_family_template(
    gateway: httpx.AsyncClient, family: str, tokenizer_dirs: dict[str, Path]
) -> None:
    layout = LAYOUTS[family]
    plain = Plain(tokenizer_dirs[family])
    resp = await render(gateway, model=family, prompt=PREFIX, suffix=SUFFIX, max_tokens=32)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fim_template"] == layout.template
    (prompt,) = body["prompts"]
    assert prompt["tokenized_by"] == "gateway"
    assert prompt["token_ids"] == expected_fim(plain, layout, PREFIX, SUFFIX)
    assert plain.id(layout.stop) in body["stop_token_ids"]
    assert plain.id(layout.prefix) in body["stop_token_ids"]
    models = {m["id"]: m for m in (await gateway.get("/v1/models")).json()["data"]}
    assert models[family]["fim_template"] == layout.template


@pytest.mark.parametrize("family", list(LAYOUTS))
async def test_fim_token_text_in_user_code_stays_text(
    gateway: httpx.AsyncClient, family: str, tokenizer_dirs: dict[str, Path]
) -> None:
    layout = LAYOUTS[family]
    plain = Plain(tokenizer_dirs[family])
    controls = [s for s in (layout.prefix, layout.suffix, layout.middle, layout.stop) if s]
    typed = "x = '" + "".join(controls) + "'\n"
    resp = await render(gateway, model=family, prompt=PREFIX + typed, suffix=typed + SUFFIX)
    assert resp.status_code == 200, resp.text
    (prompt,) = resp.json()["prompts"]
    ids = prompt["token_ids"]
    assert ids == expected_fim(plain, layout, PREFIX + typed, typed + SUFFIX)
    for spelling in controls[: 3 if layout.middle else 2]:
        assert ids.count(plain.id(spelling)) == 1  # only the one the template puts there
    assert plain.id(layout.stop) not in ids
    assert prompt["text"] == plain.tok.decode(ids, skip_special_tokens=False)
    if "▁" not in typed:  # a "▁" in text decodes to a space
        assert prompt["text"].count(typed) == 2


@pytest.mark.parametrize("family", NO_FIM)
async def test_model_without_fim_refuses_suffix(gateway: httpx.AsyncClient, family: str) -> None:
    for path in ("/v1/completions/render", "/v1/completions"):
        resp = await gateway.post(path, json={"model": family, "prompt": "x", "suffix": "y"})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "suffix"
        assert "fill-in-the-middle" in error["message"]
    models = {m["id"]: m for m in (await gateway.get("/v1/models")).json()["data"]}
    assert models[family]["fim_template"] is None


async def test_rendered_prompt_without_suffix_is_left_to_the_engine(
    gateway: httpx.AsyncClient, tokenizer_dirs: dict[str, Path]
) -> None:
    """Continue sends an already rendered FIM prompt: its tokens are the model's own."""
    plain = Plain(tokenizer_dirs["qwen2.5-coder"])
    rendered = "<|fim_prefix|>def f():\n    <|fim_suffix|>\n<|fim_middle|>"
    resp = await render(gateway, model="qwen2.5-coder", prompt=rendered)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (prompt,) = body["prompts"]
    assert prompt["tokenized_by"] == "engine"
    assert prompt["token_ids"] == plain.tok.encode(rendered).ids
    assert prompt["token_ids"][0] == plain.id("<|fim_prefix|>")
    assert body["stop_token_ids"] is None


async def test_batch_of_prefixes_shares_the_suffix(
    gateway: httpx.AsyncClient, tokenizer_dirs: dict[str, Path]
) -> None:
    plain = Plain(tokenizer_dirs["starcoder"])
    layout = LAYOUTS["starcoder"]
    resp = await render(gateway, model="starcoder", prompt=["a = 1\n", "b = 2\n"], suffix=SUFFIX)
    assert resp.status_code == 200, resp.text
    ids = [p["token_ids"] for p in resp.json()["prompts"]]
    assert ids == [expected_fim(plain, layout, p, SUFFIX) for p in ("a = 1\n", "b = 2\n")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, 2, 3], "suffix": "x"}, "prompt"),
        ({"prompt": "x", "suffix": "y", "echo": True}, "echo"),
        ({"prompt": "x", "extra_files": [{"filename": "a.py", "text": "a = 1"}]}, "extra_files"),
    ],
)
async def test_fim_request_errors_name_the_field(
    gateway: httpx.AsyncClient, body: dict[str, object], param: str
) -> None:
    resp = await render(gateway, model="qwen2.5-coder", **body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def _qwen_repo_ids(plain: Plain, files: list[tuple[str, str]]) -> list[int]:
    ids = [plain.id("<|repo_name|>"), *plain.text("repo\n")]
    for name, text in files:
        ids += [plain.id("<|file_sep|>"), *plain.text(f"{name}\n{text}\n")]
    return ids + [plain.id("<|file_sep|>"), *plain.text("current_file\n")]


async def test_qwen_repo_level_context(
    gateway: httpx.AsyncClient, tokenizer_dirs: dict[str, Path]
) -> None:
    plain = Plain(tokenizer_dirs["qwen2.5-coder"])
    files = [("util.py", "def helper():\n    return 1\n"), ("main.py", "import util\n")]
    resp = await render(
        gateway,
        model="qwen2.5-coder",
        prompt=PREFIX,
        suffix=SUFFIX,
        extra_files=[{"filename": n, "text": t} for n, t in files],
    )
    assert resp.status_code == 200, resp.text
    (prompt,) = resp.json()["prompts"]
    core = expected_fim(plain, LAYOUTS["qwen2.5-coder"], PREFIX, SUFFIX)
    assert prompt["token_ids"] == _qwen_repo_ids(plain, files) + core
    assert (prompt["files_used"], prompt["files_dropped"]) == (2, 0)


async def test_starcoder2_repo_level_context(
    gateway: httpx.AsyncClient, tokenizer_dirs: dict[str, Path]
) -> None:
    plain = Plain(tokenizer_dirs["starcoder2"])
    resp = await render(
        gateway,
        model="starcoder2",
        prompt=PREFIX,
        suffix=SUFFIX,
        extra_files=[{"filename": "util.py", "text": "X = 1\n"}],
    )
    assert resp.status_code == 200, resp.text
    expected = [
        plain.id("<repo_name>"),
        *plain.text("repo"),
        plain.id("<file_sep>"),
        *plain.text("util.py\nX = 1\n"),
        plain.id("<file_sep>"),
        *expected_fim(plain, LAYOUTS["starcoder2"], "current_file\n" + PREFIX, SUFFIX),
    ]
    assert resp.json()["prompts"][0]["token_ids"] == expected


async def test_family_without_repo_format_drops_extra_files(
    gateway: httpx.AsyncClient, tokenizer_dirs: dict[str, Path]
) -> None:
    plain = Plain(tokenizer_dirs["codellama"])
    resp = await render(
        gateway,
        model="codellama",
        prompt=PREFIX,
        suffix=SUFFIX,
        extra_files=[{"filename": "a.py", "text": "A = 1\n"}],
    )
    (prompt,) = resp.json()["prompts"]
    assert prompt["token_ids"] == expected_fim(plain, LAYOUTS["codellama"], PREFIX, SUFFIX)
    assert (prompt["files_used"], prompt["files_dropped"]) == (0, 1)


# The real Qwen2.5-Coder tokenizer (Qwen2.5-Coder-0.5B-Instruct, via tests/server/real_model.py).
# Expected prompts come from the model card's FIM format, encoded by the `tokenizers` library in
# one go, and the ids from the official tokenizer_config.json: nothing from codeserve.server.fim.
QWEN_CARD_FIM = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
QWEN_IDS = {
    "<|endoftext|>": 151643,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}


@pytest.fixture(scope="module")
async def real_qwen(real_model_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_gateway(models_for({"qwen-real": real_model_dir})) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        yield http


def test_real_qwen_tokenizer_has_the_documented_fim_ids(real_model_dir: Path) -> None:
    tok = Tokenizer.from_file(str(real_model_dir / "tokenizer.json"))
    assert {s: tok.token_to_id(s) for s in QWEN_IDS} == QWEN_IDS


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        (PREFIX, SUFFIX),
        ("import os\n\ndef main():\n    path = ", "\n    print(path)\n"),
        ("x = 1\n", ""),
        ("# café: naïve ünïcode ✓\ns = '", "'\n"),
    ],
)
async def test_real_qwen_render_matches_the_model_card(
    real_qwen: httpx.AsyncClient, real_model_dir: Path, prefix: str, suffix: str
) -> None:
    tok = Tokenizer.from_file(str(real_model_dir / "tokenizer.json"))
    card = QWEN_CARD_FIM.format(prefix=prefix, suffix=suffix)
    resp = await render(real_qwen, model="qwen-real", prompt=prefix, suffix=suffix)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fim_template"] == "qwen2.5-coder"
    (prompt,) = body["prompts"]
    assert prompt["token_ids"] == tok.encode(card, add_special_tokens=False).ids
    assert prompt["text"] == card
    assert QWEN_IDS["<|endoftext|>"] in body["stop_token_ids"]


async def test_real_qwen_fim_token_text_typed_by_a_user_stays_text(
    real_qwen: httpx.AsyncClient, real_model_dir: Path
) -> None:
    plain = Plain(real_model_dir)  # the same tokenizer with no added tokens: all text is text
    typed = "s = '" + "".join(QWEN_IDS) + "'\n"
    prefix, suffix = PREFIX + typed, typed + SUFFIX
    resp = await render(real_qwen, model="qwen-real", prompt=prefix, suffix=suffix)
    assert resp.status_code == 200, resp.text
    (prompt,) = resp.json()["prompts"]
    ids = prompt["token_ids"]
    assert ids == [
        QWEN_IDS["<|fim_prefix|>"],
        *plain.text(prefix),
        QWEN_IDS["<|fim_suffix|>"],
        *plain.text(suffix),
        QWEN_IDS["<|fim_middle|>"],
    ]
    for spelling, token in QWEN_IDS.items():
        expected = 1 if spelling in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>") else 0
        assert ids.count(token) == expected, spelling
    assert prompt["text"] == QWEN_CARD_FIM.format(prefix=prefix, suffix=suffix)
