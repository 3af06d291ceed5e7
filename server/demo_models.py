"""Tiny random-weight demo models, built locally in seconds.

They exist so the whole product (gateway, real vLLM engines, FIM rendering, evals, load tests) runs on
a machine that cannot reach a model hub. Their text is meaningless: the weights are random. The
tokenizer is a byte-level BPE trained on the local Python standard library, carrying the family's
real special-token spellings so FIM templates and stop tokens behave exactly as with the real model.
"""

from __future__ import annotations

import json
import logging
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import CliError

log = logging.getLogger(__name__)

# Small enough to build in seconds, large enough that vLLM's CPU attention kernel accepts it
# (head_dim must be 64, not 16).
HIDDEN = 256
HEADS = 4
KV_HEADS = 2
LAYERS = 2
INTERMEDIATE = 512
CONTEXT = 4096
VOCAB_TARGET = 4096
CORPUS_BYTES = 3_000_000

README = """# Codeserve demo model ({family})

This is a TINY RANDOM-WEIGHT model built locally by `codeserve demo-model`. Its output is
meaningless text. It exists to exercise the real serving path (vLLM engine, gateway, FIM rendering,
evaluation, load testing) without downloading a model. Do not use it to judge code quality.

- family: {family}
- architecture: {architecture}
- special tokens: {special}
"""


@dataclass(frozen=True)
class Family:
    """A code-model family: its architecture, tokenizer special tokens and chat template."""

    name: str
    architecture: str
    build_config: Callable[[int, dict[str, int]], Any]
    special_tokens: tuple[str, ...]
    eos: str
    bos: str | None = None
    chat_template: str | None = None
    extra_tokenizer_config: dict[str, Any] = field(default_factory=dict)


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PLAIN_CHAT = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def _common(vocab: int, ids: dict[str, int]) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def _qwen2(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import Qwen2Config

    eos = ids["<|endoftext|>"]
    return Qwen2Config(**_common(vocab, ids), bos_token_id=eos, eos_token_id=eos)


def _starcoder2(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import Starcoder2Config

    eos = ids["<|endoftext|>"]
    return Starcoder2Config(
        **_common(vocab, ids), bos_token_id=eos, eos_token_id=eos, use_bias=True
    )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="qwen2.5-coder",
            architecture="Qwen2ForCausalLM",
            build_config=_qwen2,
            special_tokens=(
                "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
                "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
                "<|file_sep|>",
            ),
            eos="<|endoftext|>",
            chat_template=CHATML,
        ),
        Family(
            name="starcoder2",
            architecture="Starcoder2ForCausalLM",
            build_config=_starcoder2,
            special_tokens=(
                "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                "<repo_name>", "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>",
            ),
            eos="<|endoftext|>",
            bos="<|endoftext|>",
            chat_template=PLAIN_CHAT,
        ),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise CliError(
            f"unknown demo family {name!r}; choose one of: {', '.join(sorted(FAMILIES))}"
        ) from None


def _corpus(limit: int = CORPUS_BYTES) -> Iterator[str]:
    """Python source from the local standard library, in a fixed order so builds are repeatable."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    used = 0
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in path.parts[-2:][0] or used >= limit:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        used += len(text)
        yield text


def _train_tokenizer(fam: Family) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        special_tokens=list(fam.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def build_demo_model(out_dir: Path, family_name: str, seed: int = 0) -> Path:
    """Write a tiny random-weight model of `family_name` to `out_dir` and return it."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    # Config defaults of some families warn about token ids we override anyway, and saving draws
    # a progress bar: noise for a model built in seconds.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    fam = family(family_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer(fam)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=fam.eos,
        bos_token=fam.bos,
        pad_token=fam.eos,
        unk_token=None,
        additional_special_tokens=[t for t in fam.special_tokens if t not in (fam.eos, fam.bos)],
        model_max_length=CONTEXT,
        **fam.extra_tokenizer_config,
    )
    if fam.chat_template:
        tokenizer.chat_template = fam.chat_template
    tokenizer.save_pretrained(out_dir)

    ids = {t: raw.token_to_id(t) for t in fam.special_tokens}
    # Round the vocabulary up so the embedding matrix is a friendly shape for the kernels.
    vocab = (raw.get_vocab_size() + 63) // 64 * 64
    config = fam.build_config(vocab, ids)
    config.architectures = [fam.architecture]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.to(torch.float32).save_pretrained(out_dir, safe_serialization=True)

    (out_dir / "README.md").write_text(
        README.format(
            family=fam.name, architecture=fam.architecture, special=", ".join(fam.special_tokens)
        )
    )
    (out_dir / "codeserve_demo.json").write_text(
        json.dumps({"family": fam.name, "random_weights": True, "seed": seed}, indent=2)
    )
    log.info("built demo model %s (%s) in %s", fam.name, fam.architecture, out_dir)
    return out_dir


def is_demo_model(path: Path) -> bool:
    return (path / "codeserve_demo.json").is_file()
