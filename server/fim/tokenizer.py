"""A model's tokenizer as prompt rendering needs it (the fast `tokenizers` library, no torch).

Two guarantees FIM rendering relies on:
- control tokens (FIM, repo, end-of-text) enter a prompt only as ids the gateway inserts: user text
  that happens to spell `<fim_prefix>` is tokenized as ordinary text;
- text can be encoded without the implicit leading space SentencePiece-style tokenizers add to the
  start of every encoding (CodeLlama and Codestral encode the suffix that way).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from codeserve.server.config import Settings
from codeserve.server.errors import APIError

log = logging.getLogger("codeserve")

_SPACE_MARK = "▁"


class TokenizerUnavailable(Exception):
    """The tokenizer of a model cannot be loaded; the message says why (for the log and 400s)."""


@dataclass(frozen=True)
class TokenizerFiles:
    tokenizer_json: Path
    config_json: Path | None


def locate_tokenizer(source: str, settings: Settings) -> TokenizerFiles:
    """tokenizer.json (and config.json when present) of a local model dir or a hub model id."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerUnavailable(f"{path} has no tokenizer.json")
        config = path / "config.json"
        return TokenizerFiles(path / "tokenizer.json", config if config.is_file() else None)
    if source.startswith(("/", ".", "~")):
        raise TokenizerUnavailable(f"no such model directory: {source}")
    return _from_hub(source, settings)


def _from_hub(model_id: str, settings: Settings) -> TokenizerFiles:
    from huggingface_hub import hf_hub_download

    from codeserve.server.defaults import weights_available

    # A quick probe first: hf_hub_download retries an unreachable hub for ~25 s.
    if not weights_available(model_id, settings):
        raise TokenizerUnavailable(
            f"{model_id} is not in the local hub cache and the model hub is not reachable"
        )
    try:
        tokenizer = hf_hub_download(
            model_id,
            "tokenizer.json",
            local_files_only=settings.hf_hub_offline,
            etag_timeout=settings.hub_probe_timeout_s,
        )
    except Exception as exc:  # hub errors come in many types; any of them means "no tokenizer"
        raise TokenizerUnavailable(
            f"cannot fetch tokenizer.json of {model_id}: {type(exc).__name__}"
        ) from None
    try:
        config: str | None = hf_hub_download(
            model_id,
            "config.json",
            local_files_only=settings.hf_hub_offline,
            etag_timeout=settings.hub_probe_timeout_s,
        )
    except Exception:  # config.json only refines detection; its absence is fine
        config = None
    return TokenizerFiles(Path(tokenizer), Path(config) if config else None)


def read_model_type(config_json: Path | None) -> str | None:
    if config_json is None:
        return None
    try:
        value = json.loads(config_json.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _is_space_prepend(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "Prepend"
        and (node.get("prepend") == _SPACE_MARK)
    )


def _without_leading_space(data: dict[str, Any]) -> bool:
    """Turn off the implicit leading space of a tokenizer.json, in place; False if it has none."""
    changed = False
    if _is_space_prepend(data.get("normalizer")):
        data["normalizer"] = None
        changed = True
    return (
        _drop_leading_space(data.get("normalizer"))
        | _drop_leading_space(data.get("pre_tokenizer"))
        | changed
    )


def _drop_leading_space(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    changed = False
    kind = node.get("type")
    if kind == "Metaspace":
        if node.get("prepend_scheme", "always") != "never":
            node["prepend_scheme"] = "never"
            changed = True
        if node.get("add_prefix_space"):
            node["add_prefix_space"] = False
            changed = True
    elif kind == "ByteLevel" and node.get("add_prefix_space"):
        node["add_prefix_space"] = False
        changed = True
    for key in ("normalizers", "pretokenizers"):
        children = node.get(key)
        if isinstance(children, list):
            kept = [c for c in children if not _is_space_prepend(c)]
            changed |= len(kept) != len(children)
            node[key] = kept
            for child in kept:
                changed |= _drop_leading_space(child)
    return changed


class ModelTokenizer:
    """Token ids by text, and encodings of user text that can never produce control tokens."""

    def __init__(self, tokenizer_json: str, control: Iterable[str] = ()) -> None:
        self.engine = Tokenizer.from_str(tokenizer_json)
        data = json.loads(tokenizer_json)
        self.vocab: dict[str, int] = self.engine.get_vocab(with_added_tokens=True)
        wanted = {s for s in control if s in self.vocab}
        # Our copy treats every control token as special and encodes special tokens as text, so
        # their spellings inside user text go through the normal BPE like any other characters.
        for added in data.get("added_tokens", []):
            if added.get("content") in wanted:
                added["special"] = True
        special = {a["content"] for a in data.get("added_tokens", []) if a.get("special")}
        self._control_spellings = sorted(s for s in wanted | special if len(s) > 1)
        self.control_ids = frozenset(self.vocab[s] for s in wanted | special)
        self._text = self._text_tokenizer(data)
        if _without_leading_space(data):
            self._text_no_space = self._text_tokenizer(data)
        else:
            self._text_no_space = self._text
        self.leading_ids, self.trailing_ids = self._post_processor_ends()

    @staticmethod
    def _text_tokenizer(data: dict[str, Any]) -> Tokenizer:
        tok = Tokenizer.from_str(json.dumps(data))
        tok.encode_special_tokens = True
        return tok

    @classmethod
    def from_file(cls, path: Path, control: Iterable[str] = ()) -> ModelTokenizer:
        return cls(path.read_text(encoding="utf-8"), control)

    def _post_processor_ends(self) -> tuple[list[int], list[int]]:
        """Ids the tokenizer puts before (BOS) and after (T5's </s>) every encoding, as the
        engine tokenizes prompts."""
        bare = self.engine.encode("a", add_special_tokens=False).ids
        full = self.engine.encode("a", add_special_tokens=True).ids
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return full[:start], full[start + len(bare) :]
        return [], []

    def token_id(self, spellings: Iterable[str]) -> int | None:
        """Id of the first spelling the vocabulary has."""
        for spelling in spellings:
            if spelling in self.vocab:
                return self.vocab[spelling]
        return None

    def encode_text(self, text: str, *, leading_space: bool) -> list[int]:
        """User text as plain text; `leading_space=False` suppresses the implicit leading space."""
        if not text:
            return []
        tok = self._text if leading_space else self._text_no_space
        ids = tok.encode(text, add_special_tokens=False).ids
        if self.control_ids.isdisjoint(ids):
            return ids
        return self._encode_split(text, leading_space)

    def _encode_split(self, text: str, leading_space: bool) -> list[int]:
        """Some vocabularies can also reach a control token through BPE merges: cut the text
        between the first two characters of every control spelling and encode the pieces."""
        cuts: set[int] = set()
        for spelling in self._control_spellings:
            start = text.find(spelling)
            while start >= 0:
                cuts.add(start + 1)
                start = text.find(spelling, start + 1)
        ids: list[int] = []
        last = 0
        for cut in sorted(cuts) + [len(text)]:
            piece = text[last:cut]
            tok = self._text if (leading_space and last == 0) else self._text_no_space
            ids += tok.encode(piece, add_special_tokens=False).ids if piece else []
            last = cut
        if not self.control_ids.isdisjoint(ids):
            raise APIError(
                "the model's tokenizer turns this text into a control token; refusing to send it",
                code="tokenizer_injection",
            )
        return ids

    def encode_prompt(self, text: str) -> list[int]:
        """A string prompt as the engine tokenizes it itself (special tokens parsed, BOS added)."""
        return self.engine.encode(text, add_special_tokens=True).ids

    def decode(self, ids: list[int]) -> str:
        return self.engine.decode(ids, skip_special_tokens=False)
