"""Fill-in-the-middle prompt templates, one per code-model family, spelled token-exact.

Facts come from shared/reference.md §1 (model cards, TabbyML registry, Continue's templates,
Meta's codellama generation code, mistral-common). Every spelling is a token *text* as it appears
in the model's tokenizer; `codeserve.server.fim.tokenizer` maps it to an id, so the same template works for
any checkpoint of the family. Alternative spellings are tried in order (CodeLlama's HF vocab
spells `▁<PRE>`, GGUF conversions `<PRE>`).

This module is data only: `codeserve.server.fim.renderer` renders, `codeserve.server.fim.tokenizer` tokenizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Spellings = tuple[str, ...]

# Neither the OpenAI body nor llama.vscode's /infill body names the repository or the file being
# edited, but the repo-level formats need both; these neutral placeholders keep the layout the
# models were trained on.
REPO_NAME = "repo"
CURRENT_FILE = "current_file"


@dataclass(frozen=True)
class RepoFormat:
    """How a family lays out other files of the repository before the FIM prompt.

    qwen2.5-coder: `<|repo_name|>{repo}\\n<|file_sep|>{path}\\n{code}\\n ... <|file_sep|>{path}\\n`
    then the FIM prompt. starcoder2: `<repo_name>{repo}<file_sep>{path}\\n{code} ... <file_sep>`
    then the FIM prompt whose prefix starts with `{path}\\n` (StarCoder2 paper, repo context).
    """

    repo_token: Spellings
    file_token: Spellings
    after_repo_name: str
    after_file: str
    path_in_prefix: bool


@dataclass(frozen=True)
class ChatFrame:
    """A FIM prompt that stands in a chat turn (CodeGeeX4's infilling guideline): the user turn
    opens with a header of file path, language and mode, and the assistant turn starts the
    answer. The OpenAI body names neither the file nor its language: the path is the neutral
    placeholder and the language is left blank, as the guideline allows when it is unknown."""

    user: Spellings
    header: str
    assistant: Spellings
    after_assistant: str


@dataclass(frozen=True)
class FimTemplate:
    name: str
    summary: str
    prefix: Spellings
    suffix: Spellings
    # SPM templates without a middle token (Codestral) leave it empty.
    middle: Spellings
    # psm: [prefix] p [suffix] s [middle]; spm: [suffix] s [prefix] p [middle]; mask (InCoder's
    # causal masking): p [prefix] s [suffix] [prefix], where `prefix` is the sentinel that marks
    # the hole and opens the answer (<|mask:0|>) and `suffix` the one after the suffix (<|mask:1|>);
    # span (T5 span corruption, CodeT5+): p [prefix] s, one sentinel for the hole (`suffix` names
    # the same token), the encoder's input; the decoder answers <extra_id_0> middle <extra_id_1>.
    order: Literal["psm", "spm", "mask", "span"]
    # Tokens that end the middle; those present in the vocabulary become stop_token_ids.
    stops: tuple[Spellings, ...]
    repo: RepoFormat | None = None
    # Detection: extra tokens that must exist, and config.json `model_type`s that must match
    # (to tell apart families sharing one token set).
    markers: Spellings = ()
    model_types: tuple[str, ...] = ()
    frame: ChatFrame | None = None

    def control_spellings(self) -> set[str]:
        """Every token text this template emits or stops on (never to be parsed from user text)."""
        out: set[str] = set(self.prefix) | set(self.suffix) | set(self.middle)
        if self.frame is not None:
            out.update(self.frame.user)
            out.update(self.frame.assistant)
        for alternatives in self.stops:
            out.update(alternatives)
        if self.repo is not None:
            out.update(self.repo.repo_token)
            out.update(self.repo.file_token)
        return out


def _one(*spellings: str) -> Spellings:
    return spellings


_SC_FIM = (_one("<fim_prefix>"), _one("<fim_suffix>"), _one("<fim_middle>"))
_SC_STOPS = (_one("<|endoftext|>"), *_SC_FIM, _one("<fim_pad>"))
_QWEN_FIM = (_one("<|fim_prefix|>"), _one("<|fim_suffix|>"), _one("<|fim_middle|>"))
_LLAMA_FIM = (_one("▁<PRE>", "<PRE>"), _one("▁<SUF>", "<SUF>"), _one("▁<MID>", "<MID>"))
_DEEPSEEK_FIM = (_one("<｜fim▁begin｜>"), _one("<｜fim▁hole｜>"), _one("<｜fim▁end｜>"))
_SANTA_FIM = (_one("<fim-prefix>"), _one("<fim-suffix>"), _one("<fim-middle>"))


def _psm(
    name: str,
    summary: str,
    fim: tuple[Spellings, Spellings, Spellings],
    stops: tuple[Spellings, ...],
    *,
    repo: RepoFormat | None = None,
    markers: Spellings = (),
    model_types: tuple[str, ...] = (),
) -> FimTemplate:
    prefix, suffix, middle = fim
    return FimTemplate(
        name=name,
        summary=summary,
        prefix=prefix,
        suffix=suffix,
        middle=middle,
        order="psm",
        stops=stops,
        repo=repo,
        markers=markers,
        model_types=model_types,
    )


# Detection tries these in order and takes the first whose tokens are all in the vocabulary, so
# the more specific templates (extra markers or model types) come before the general ones.
TEMPLATES: tuple[FimTemplate, ...] = (
    FimTemplate(
        name="incoder",
        summary="InCoder causal masking: {p}<|mask:0|>{s}<|mask:1|><|mask:0|> ... <|endofmask|>",
        prefix=_one("<|mask:0|>"),
        suffix=_one("<|mask:1|>"),
        middle=(),
        order="mask",
        # The answer ends at <|endofmask|>; InCoder's own infill code also stops at the end
        # of the document.
        stops=(_one("<|endofmask|>"), _one("</s>"), _one("<|endoftext|>"), _one("<|mask:1|>")),
        markers=_one("<|endofmask|>"),
    ),
    FimTemplate(
        name="codet5p",
        summary="CodeT5+ 220M/770M span infill: <s>{p}<extra_id_0>{s}</s> -> {m}<extra_id_1>",
        prefix=_one("<extra_id_0>"),
        suffix=_one("<extra_id_0>"),
        middle=(),
        order="span",
        stops=(_one("<extra_id_1>"), _one("</s>")),
        markers=_one("<extra_id_1>"),
        model_types=("t5",),
    ),
    FimTemplate(
        name="codegeex4",
        summary="CodeGeeX4 (chat-framed): <|user|>\\n###PATH:..\\n###LANGUAGE:\\n###MODE:BLOCK\\n"
        "<|code_suffix|>{s}<|code_prefix|>{p}<|code_middle|><|assistant|>\\n",
        prefix=_one("<|code_prefix|>"),
        suffix=_one("<|code_suffix|>"),
        middle=_one("<|code_middle|>"),
        order="spm",
        # GLM-4's chat stops: the end of the text or the start of any other turn.
        stops=(
            _one("<|endoftext|>"),
            _one("<|user|>"),
            _one("<|observation|>"),
            _one("<|assistant|>"),
        ),
        frame=ChatFrame(
            user=_one("<|user|>"),
            header=f"\n###PATH:{CURRENT_FILE}\n###LANGUAGE:\n###MODE:BLOCK\n",
            assistant=_one("<|assistant|>"),
            after_assistant="\n",
        ),
    ),
    FimTemplate(
        name="codestral",
        summary="Codestral-style suffix-first: <s>[SUFFIX]{s}[PREFIX]{p}",
        prefix=_one("[PREFIX]"),
        suffix=_one("[SUFFIX]"),
        middle=(),
        order="spm",
        stops=(_one("</s>"), _one("[PREFIX]"), _one("[SUFFIX]"), _one("[MIDDLE]")),
    ),
    _psm(
        "codellama",
        "CodeLlama 7B/13B/70B: <s>▁<PRE> {p}▁<SUF>{s}▁<MID>",
        _LLAMA_FIM,
        (_one("▁<EOT>", "<EOT>"), _one("</s>"), *_LLAMA_FIM),
    ),
    _psm(
        "deepseek-coder",
        "DeepSeek-Coder base: <｜fim▁begin｜>{p}<｜fim▁hole｜>{s}<｜fim▁end｜>",
        _DEEPSEEK_FIM,
        (_one("<｜end▁of▁sentence｜>"), *_DEEPSEEK_FIM),
    ),
    _psm(
        "codegemma",
        "CodeGemma: <bos><|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>",
        _QWEN_FIM,
        (_one("<|file_separator|>"), _one("<eos>"), *_QWEN_FIM),
        markers=_one("<|file_separator|>"),
    ),
    _psm(
        "qwen2.5-coder",
        "Qwen2.5-Coder base, repo-level with <|repo_name|>/<|file_sep|>",
        _QWEN_FIM,
        (
            _one("<|endoftext|>"),
            _one("<|fim_pad|>"),
            _one("<|file_sep|>"),
            _one("<|repo_name|>"),
            _one("<|im_end|>"),
            *_QWEN_FIM,
        ),
        repo=RepoFormat(
            repo_token=_one("<|repo_name|>"),
            file_token=_one("<|file_sep|>"),
            after_repo_name="\n",
            after_file="\n",
            path_in_prefix=False,
        ),
    ),
    _psm(
        "granite",
        "Granite code (StarCoder tokens): <fim_prefix>{p}<fim_suffix>{s}<fim_middle>",
        _SC_FIM,
        _SC_STOPS,
        model_types=("granite",),
    ),
    _psm(
        "stable-code",
        "stable-code (StarCoder tokens): <fim_prefix>{p}<fim_suffix>{s}<fim_middle>",
        _SC_FIM,
        _SC_STOPS,
        model_types=("stablelm", "stablelm_epoch"),
    ),
    _psm(
        "starcoder2",
        "StarCoder2, repo-level with <repo_name>/<file_sep>",
        _SC_FIM,
        (*_SC_STOPS, _one("<file_sep>")),
        repo=RepoFormat(
            repo_token=_one("<repo_name>"),
            file_token=_one("<file_sep>"),
            after_repo_name="",
            after_file="",
            path_in_prefix=True,
        ),
        markers=("<repo_name>", "<file_sep>"),
    ),
    _psm(
        "starcoder",
        "StarCoder/StarCoderBase: <fim_prefix>{p}<fim_suffix>{s}<fim_middle>",
        _SC_FIM,
        _SC_STOPS,
    ),
    _psm(
        "santacoder",
        "SantaCoder (hyphens): <fim-prefix>{p}<fim-suffix>{s}<fim-middle>",
        _SANTA_FIM,
        (_one("<|endoftext|>"), _one("<fim-pad>"), *_SANTA_FIM),
    ),
)

BY_NAME: dict[str, FimTemplate] = {t.name: t for t in TEMPLATES}
FIM_CHOICES: tuple[str, ...] = ("auto", "none", *BY_NAME)


def template_names() -> list[str]:
    return list(BY_NAME)
