"""Demo models of every family: architecture, head size vLLM's CPU kernels accept, the family's
real special-token spellings, FIM detection, and a forward pass in transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeserve.common.errors import CliError
from codeserve.server.demo_models import FAMILIES, build_demo_model, family
from codeserve.server.fim.renderer import detect_template
from codeserve.server.fim.tokenizer import ModelTokenizer, read_model_type
from tests.server.fim_support import LAYOUTS, NO_FIM

# Families served by transformers serve (vLLM lacks them) or, CodeGeeX, by vLLM's GLM support;
# their FIM template (None: `suffix` refused).
SENTINEL_FAMILIES = {
    "codegen": None,
    "incoder": "incoder",
    "codegeex": "codegeex4",
    "codet5p": "codet5p",
}
ALL = [*LAYOUTS, *NO_FIM, *SENTINEL_FAMILIES]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo-families")
    return {
        name: build_demo_model(root / name, name, corpus_bytes=60_000, vocab_size=800)
        for name in ALL
    }


def test_every_family_has_a_demo() -> None:
    assert sorted(FAMILIES) == sorted(ALL)
    with pytest.raises(CliError, match="codellama"):
        family("llama-coder")


@pytest.mark.parametrize("name", ALL)
def test_demo_model_of_family(built: dict[str, Path], name: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = built[name]
    fam = FAMILIES[name]
    config = AutoConfig.from_pretrained(path)
    assert config.architectures == [fam.architecture]
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    assert (
        getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or hidden // heads
    ) == 64

    added = {
        t["content"]: t["special"]
        for t in json.loads((path / "tokenizer.json").read_text())["added_tokens"]
    }
    for token in fam.special_tokens:
        assert added.get(token) is True, token
    for token in fam.plain_tokens:
        assert added.get(token) is False, token

    tokenizer = ModelTokenizer.from_file(path / "tokenizer.json")
    template = detect_template(tokenizer.vocab, read_model_type(path / "config.json"))
    expected = LAYOUTS[name].template if name in LAYOUTS else SENTINEL_FAMILIES.get(name)
    assert (template.name if template else None) == expected

    ids = torch.tensor([tokenizer.encode_prompt("def f():")])
    if fam.seq2seq:
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
        logits = model(input_ids=ids, decoder_input_ids=ids[:, :1]).logits
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
        logits = model(ids).logits
    assert logits.shape[-1] == model.config.vocab_size >= len(tokenizer.vocab)
