"""Tiny random-weight demo models, built locally in seconds.

They exist so fast tests exercise the whole product (gateway, real vLLM engines, FIM rendering,
evals, load tests) for every family, and so `codeserve serve` still serves something on a machine
that reaches neither a model hub nor a package index (with a package index the offline default is
the real Qwen2.5-Coder-0.5B-Instruct: see server/defaults.py). Their text is meaningless: the
weights are random. The
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
from typing import Any, Literal

from codeserve.common.errors import CliError

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


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PLAIN_CHAT = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


TokenizerKind = Literal["byte-level", "metaspace", "metaspace-no-prefix"]


@dataclass(frozen=True)
class Family:
    """A code-model family: its architecture, tokenizer special tokens and chat template."""

    name: str
    architecture: str
    build_config: Callable[[int, dict[str, int]], Any]
    special_tokens: tuple[str, ...]
    eos: str
    bos: str | None = None
    chat_template: str | None = PLAIN_CHAT
    extra_tokenizer_config: dict[str, Any] = field(default_factory=dict)
    # byte-level BPE (GPT-2 style) or SentencePiece-style "▁" words, with the implicit leading
    # space (Llama, Mistral) or without (Gemma).
    tokenizer: TokenizerKind = "byte-level"
    # Whether the tokenizer puts `bos` before every encoding (Llama, Gemma, DeepSeek, Mistral).
    add_bos: bool = False
    # Added tokens that are not "special" in the real tokenizer (DeepSeek-Coder's FIM tokens).
    plain_tokens: tuple[str, ...] = ()
    unk: str | None = None
    # A token the tokenizer puts after every encoding (T5-style `</s>`).
    eos_after: bool = False
    # Encoder-decoder (CodeT5+): built with AutoModelForSeq2SeqLM.
    seq2seq: bool = False


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


def _llama_like(
    config_class: str, bos: str, eos: str, **extra: Any
) -> Callable[[int, dict[str, int]], Any]:
    """Config builder for families whose config takes the common Llama-style fields."""

    def build(vocab: int, ids: dict[str, int]) -> Any:
        import transformers

        cls = getattr(transformers, config_class)
        return cls(**_common(vocab, ids), bos_token_id=ids[bos], eos_token_id=ids[eos], **extra)

    return build


def _gpt_bigcode(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import GPTBigCodeConfig

    eos = ids["<|endoftext|>"]
    return GPTBigCodeConfig(
        vocab_size=vocab,
        n_positions=CONTEXT,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        multi_query=True,
        bos_token_id=eos,
        eos_token_id=eos,
        torch_dtype="float32",  # type: ignore[call-arg]
    )


def _gpt_neox(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import GPTNeoXConfig

    eos = ids["<|endoftext|>"]
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=CONTEXT,
        bos_token_id=eos,
        eos_token_id=eos,
        torch_dtype="float32",  # type: ignore[call-arg]
    )


def _codegen(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import CodeGenConfig

    eos = ids["<|endoftext|>"]
    return CodeGenConfig(
        vocab_size=vocab,
        n_positions=CONTEXT,
        n_ctx=CONTEXT,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        rotary_dim=32,  # CodeGen rotates half of each 64-wide head, as in the real checkpoints
        n_inner=INTERMEDIATE,
        bos_token_id=eos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )


def _xglm(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import XGLMConfig

    # InCoder's config: bos 0 (<|endoftext|>), pad 1, eos and decoder start 2 (</s>).
    return XGLMConfig(
        vocab_size=vocab,
        max_position_embeddings=CONTEXT,
        d_model=HIDDEN,
        ffn_dim=INTERMEDIATE,
        num_layers=LAYERS,
        attention_heads=HEADS,
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<pad>"],
        eos_token_id=ids["</s>"],
        decoder_start_token_id=ids["</s>"],
    )


def _glm(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import GlmConfig

    # GLM-4's eos list: end of text and the two turn openers a chat answer ends at.
    return GlmConfig(
        **_common(vocab, ids),
        head_dim=HIDDEN // HEADS,
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]],
        bos_token_id=None,
    )


def _t5(vocab: int, ids: dict[str, int]) -> Any:
    from transformers import T5Config

    # CodeT5+ 220M/770M: a T5 encoder-decoder over a RoBERTa-style byte-level BPE vocabulary;
    # the decoder starts from <pad> and ends at </s>.
    return T5Config(  # type: ignore[call-arg]
        vocab_size=vocab,
        d_model=HIDDEN,
        d_kv=HIDDEN // HEADS,
        d_ff=INTERMEDIATE,
        num_layers=LAYERS,
        num_decoder_layers=LAYERS,
        num_heads=HEADS,
        pad_token_id=ids["<pad>"],
        eos_token_id=ids["</s>"],
        decoder_start_token_id=ids["<pad>"],
        bos_token_id=ids["<s>"],
    )


_STARCODER_TOKENS = (
    "<|endoftext|>",
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
)
_LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="qwen2.5-coder",
            architecture="Qwen2ForCausalLM",
            build_config=_qwen2,
            special_tokens=(
                "<|endoftext|>",
                "<|im_start|>",
                "<|im_end|>",
                "<|fim_prefix|>",
                "<|fim_middle|>",
                "<|fim_suffix|>",
                "<|fim_pad|>",
                "<|repo_name|>",
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
                "<|endoftext|>",
                "<fim_prefix>",
                "<fim_middle>",
                "<fim_suffix>",
                "<fim_pad>",
                "<repo_name>",
                "<file_sep>",
                "<filename>",
                "<gh_stars>",
                "<issue_start>",
            ),
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="starcoder",
            architecture="GPTBigCodeForCausalLM",
            build_config=_gpt_bigcode,
            special_tokens=_STARCODER_TOKENS,
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="santacoder",
            architecture="GPTBigCodeForCausalLM",
            build_config=_gpt_bigcode,
            special_tokens=(
                "<|endoftext|>",
                "<fim-prefix>",
                "<fim-middle>",
                "<fim-suffix>",
                "<fim-pad>",
            ),
            eos="<|endoftext|>",
        ),
        Family(
            name="granite-code",
            architecture="GraniteForCausalLM",
            build_config=_llama_like("GraniteConfig", "<|endoftext|>", "<|endoftext|>"),
            special_tokens=_STARCODER_TOKENS,
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="stable-code",
            architecture="StableLmForCausalLM",
            build_config=_llama_like("StableLmConfig", "<|endoftext|>", "<|endoftext|>"),
            special_tokens=_STARCODER_TOKENS,
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="deepseek-coder",
            architecture="LlamaForCausalLM",
            build_config=_llama_like(
                "LlamaConfig", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
            ),
            special_tokens=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
            plain_tokens=("<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<pad>"),
            eos="<｜end▁of▁sentence｜>",
            bos="<｜begin▁of▁sentence｜>",
            add_bos=True,
        ),
        Family(
            name="codellama",
            architecture="LlamaForCausalLM",
            build_config=_llama_like("LlamaConfig", "<s>", "</s>"),
            special_tokens=(*_LLAMA_SPECIALS, "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"),
            eos="</s>",
            bos="<s>",
            unk="<unk>",
            tokenizer="metaspace",
            add_bos=True,
        ),
        Family(
            name="codestral",
            architecture="MistralForCausalLM",
            build_config=_llama_like("MistralConfig", "<s>", "</s>", sliding_window=None),
            special_tokens=(
                *_LLAMA_SPECIALS,
                "[INST]",
                "[/INST]",
                "[PREFIX]",
                "[MIDDLE]",
                "[SUFFIX]",
            ),
            eos="</s>",
            bos="<s>",
            unk="<unk>",
            tokenizer="metaspace",
            add_bos=True,
        ),
        Family(
            name="codegemma",
            architecture="GemmaForCausalLM",
            build_config=_llama_like("GemmaConfig", "<bos>", "<eos>", head_dim=HIDDEN // HEADS),
            special_tokens=(
                "<pad>",
                "<eos>",
                "<bos>",
                "<unk>",
                "<|fim_prefix|>",
                "<|fim_middle|>",
                "<|fim_suffix|>",
                "<|file_separator|>",
                "<start_of_turn>",
                "<end_of_turn>",
            ),
            eos="<eos>",
            bos="<bos>",
            unk="<unk>",
            tokenizer="metaspace-no-prefix",
            add_bos=True,
        ),
        # Seed families without FIM: served, with `suffix` refused.
        Family(
            name="phi-1",
            architecture="PhiForCausalLM",
            build_config=_llama_like("PhiConfig", "<|endoftext|>", "<|endoftext|>"),
            special_tokens=("<|endoftext|>",),
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="polycoder",
            architecture="GPTNeoXForCausalLM",
            build_config=_gpt_neox,
            special_tokens=("<|endoftext|>", "<|padding|>"),
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        # Families vLLM 0.32 cannot load (CodeGen, XGLM, T5): served by `transformers serve`.
        Family(
            name="codegen",
            architecture="CodeGenForCausalLM",
            build_config=_codegen,
            special_tokens=("<|endoftext|>",),
            eos="<|endoftext|>",
            bos="<|endoftext|>",
        ),
        Family(
            name="incoder",
            architecture="XGLMForCausalLM",
            build_config=_xglm,
            # InCoder's vocabulary starts <|endoftext|> <pad> </s>; <|endofmask|> and the
            # <|mask:N|> sentinels are its infilling tokens (the real one has 256 sentinels).
            special_tokens=(
                "<|endoftext|>",
                "<pad>",
                "</s>",
                "<|endofmask|>",
                *(f"<|mask:{i}|>" for i in range(4)),
            ),
            eos="</s>",
            bos="<|endoftext|>",
            add_bos=True,
        ),
        Family(
            name="codegeex",
            architecture="GlmForCausalLM",
            build_config=_glm,
            # CodeGeeX4 / GLM-4: every prompt starts [gMASK]<sop>; <|code_*|> are its
            # (chat-framed) infilling tokens.
            special_tokens=(
                "<|endoftext|>",
                "[MASK]",
                "[gMASK]",
                "[sMASK]",
                "<sop>",
                "<eop>",
                "<|system|>",
                "<|user|>",
                "<|assistant|>",
                "<|observation|>",
                "<|code_prefix|>",
                "<|code_middle|>",
                "<|code_suffix|>",
            ),
            eos="<|endoftext|>",
            bos="[gMASK]",
            add_bos=True,
            extra_tokenizer_config={"padding_side": "left"},
        ),
        Family(
            name="codet5p",
            architecture="T5ForConditionalGeneration",
            build_config=_t5,
            special_tokens=(
                "<s>",
                "<pad>",
                "</s>",
                "<unk>",
                "<mask>",
                *(f"<extra_id_{i}>" for i in range(8)),
            ),
            eos="</s>",
            bos="<s>",
            unk="<unk>",
            add_bos=True,
            eos_after=True,
            chat_template=None,
            seq2seq=True,
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


def _corpus(limit: int) -> Iterator[str]:
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


def _pipeline(fam: Family, tok: Any) -> list[str]:
    """Set the pre-tokenizer and decoder of `fam`'s kind; returns the trainer's base alphabet."""
    from tokenizers import decoders, pre_tokenizers

    if fam.tokenizer == "byte-level":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return list(pre_tokenizers.ByteLevel.alphabet())
    scheme = "first" if fam.tokenizer == "metaspace" else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    # Printable ASCII plus "☺", which Meta's CodeLlama code uses as a throw-away anchor.
    return [chr(c) for c in range(32, 127)] + ["\n", "\t", "▁", "☺"]


def _train_tokenizer(fam: Family, corpus_bytes: int, vocab_size: int) -> Any:
    from tokenizers import AddedToken, Tokenizer, models, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=fam.unk))
    alphabet = _pipeline(fam, tok)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(fam.special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(corpus_bytes), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in fam.plain_tokens])
    steps: list[processors.PostProcessor] = (
        [processors.ByteLevel(trim_offsets=False)] if fam.tokenizer == "byte-level" else []
    )
    if fam.add_bos and fam.bos:
        # GLM-4 opens every prompt with two tokens: [gMASK]<sop>.
        lead = f"{fam.bos} <sop>" if fam.bos == "[gMASK]" else fam.bos
        tail = f" {fam.eos}" if fam.eos_after else ""
        named = {t: tok.token_to_id(t) for t in (*lead.split(), *tail.split())}
        steps.append(
            processors.TemplateProcessing(
                single=f"{lead} $A{tail}",
                pair=f"{lead} $A{tail} $B{tail}",
                special_tokens=list(named.items()),
            )
        )
    if steps:
        tok.post_processor = steps[0] if len(steps) == 1 else processors.Sequence(steps)
    return tok


def build_demo_tokenizer(
    out_dir: Path,
    family_name: str,
    corpus_bytes: int = CORPUS_BYTES,
    vocab_size: int = VOCAB_TARGET,
) -> Any:
    """Train `family_name`'s tokenizer and save it (HF layout) to `out_dir`; returns it."""
    from transformers import PreTrainedTokenizerFast

    fam = family(family_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer(fam, corpus_bytes, vocab_size)
    named = (fam.eos, fam.bos, fam.unk)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=fam.eos,
        bos_token=fam.bos,
        pad_token=fam.eos,
        unk_token=fam.unk,
        additional_special_tokens=[t for t in fam.special_tokens if t not in named],
        model_max_length=CONTEXT,
        **fam.extra_tokenizer_config,
    )
    if fam.chat_template:
        tokenizer.chat_template = fam.chat_template
    tokenizer.save_pretrained(out_dir)
    return raw


def build_demo_model(
    out_dir: Path,
    family_name: str,
    seed: int = 0,
    corpus_bytes: int = CORPUS_BYTES,
    vocab_size: int = VOCAB_TARGET,
) -> Path:
    """Write a tiny random-weight model of `family_name` to `out_dir` and return it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM
    from transformers.utils import logging as hf_logging

    # Config defaults of some families warn about token ids we override anyway, and saving draws
    # a progress bar: noise for a model built in seconds.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    fam = family(family_name)
    raw = build_demo_tokenizer(out_dir, family_name, corpus_bytes, vocab_size)
    ids = {t: raw.token_to_id(t) for t in fam.special_tokens}
    # Round the vocabulary up so the embedding matrix is a friendly shape for the kernels.
    vocab = (raw.get_vocab_size() + 63) // 64 * 64
    config = fam.build_config(vocab, ids)
    config.architectures = [fam.architecture]
    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if fam.seq2seq else AutoModelForCausalLM
    model = auto.from_config(config)
    if fam.seq2seq:
        # T5 always ties its output layer to the embeddings, so a random decoder, whose output
        # is mostly its input embedding, would only ever repeat its start token (<pad>, which
        # decodes to nothing): a random final norm scrambles that.
        with torch.no_grad():
            model.decoder.final_layer_norm.weight.normal_()
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
