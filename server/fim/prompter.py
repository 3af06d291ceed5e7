"""Renders prefix + suffix (+ other repository files) into the token ids of a FIM prompt.

Control tokens are inserted as ids; user text is encoded as plain text (`ModelTokenizer`). The
prefix is encoded as the start of a document (with the tokenizer's implicit leading space, if any)
and everything else without it: Meta's CodeLlama and mistral-common encode the suffix that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from codeserve.server.errors import InvalidRequestError
from codeserve.server.fim.templates import CURRENT_FILE, REPO_NAME, FimTemplate
from codeserve.server.fim.tokenizer import ModelTokenizer
from codeserve.server.protocol import FileContext

Overflow = Literal["error", "truncate"]
# When the prefix and suffix alone overflow and truncation is allowed, the suffix keeps at most
# this share of the room: the code just before the cursor matters most.
SUFFIX_SHARE = 0.25


class TemplateMismatch(Exception):
    """The tokenizer lacks a token the template needs."""


@dataclass(frozen=True)
class Rendering:
    token_ids: list[int]
    files_used: int
    files_dropped: int
    truncated: bool


@dataclass(frozen=True)
class _RepoIds:
    repo: int
    file_sep: int


class FimPrompter:
    """One template bound to one tokenizer (ids resolved once, at start-up)."""

    def __init__(self, template: FimTemplate, tokenizer: ModelTokenizer) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.prefix_id = self._require(template.prefix)
        self.suffix_id = self._require(template.suffix)
        self.middle_id = self._require(template.middle) if template.middle else None
        stops = (tokenizer.token_id(alternatives) for alternatives in template.stops)
        self.stop_ids = list(dict.fromkeys(i for i in stops if i is not None))
        self.frame_ids: tuple[list[int], list[int]] | None = None
        if template.frame is not None:
            frame, encode = template.frame, tokenizer.encode_text
            self.frame_ids = (
                [self._require(frame.user), *encode(frame.header, leading_space=False)],
                [
                    self._require(frame.assistant),
                    *encode(frame.after_assistant, leading_space=False),
                ],
            )
        self.repo_ids: _RepoIds | None = None
        if template.repo is not None:
            repo = tokenizer.token_id(template.repo.repo_token)
            sep = tokenizer.token_id(template.repo.file_token)
            if repo is not None and sep is not None:
                self.repo_ids = _RepoIds(repo, sep)

    def _require(self, spellings: tuple[str, ...]) -> int:
        token = self.tokenizer.token_id(spellings)
        if token is None:
            raise TemplateMismatch(
                f"template {self.template.name!r} needs token {spellings[0]!r}, which the "
                "tokenizer does not have"
            )
        return token

    def render(
        self,
        prefix: str,
        suffix: str,
        files: Sequence[FileContext] = (),
        *,
        budget: int | None = None,
        overflow: Overflow = "error",
    ) -> Rendering:
        """The prompt ids; `budget` is the most prompt tokens the context leaves room for.

        Other files are laid out in the family's repo format when it has one and at least one
        file fits; otherwise they are dropped and the prompt is the plain FIM prompt."""
        fmt = self.template.repo
        if files and fmt is not None and self.repo_ids is not None:
            lead = f"{CURRENT_FILE}\n" if fmt.path_in_prefix else ""
            core, truncated = self._fit_core(lead + prefix, suffix, budget, overflow)
            ends = len(self.tokenizer.leading_ids) + len(self.tokenizer.trailing_ids)
            room = None if budget is None else budget - ends - len(core)
            context, used = self._repo_context(files, room)
            if used:
                ids = self.tokenizer.leading_ids + context + core + self.tokenizer.trailing_ids
                return Rendering(ids, used, len(files) - used, truncated)
        core, truncated = self._fit_core(prefix, suffix, budget, overflow)
        ids = self.tokenizer.leading_ids + core + self.tokenizer.trailing_ids
        return Rendering(ids, 0, len(files), truncated)

    def _fit_core(
        self, prefix: str, suffix: str, budget: int | None, overflow: Overflow
    ) -> tuple[list[int], bool]:
        pre = self.tokenizer.encode_text(prefix, leading_space=True)
        suf = self.tokenizer.encode_text(suffix, leading_space=False)
        ends = len(self.tokenizer.leading_ids) + len(self.tokenizer.trailing_ids)
        fixed = ends + len(self._core([], []))
        if budget is None or fixed + len(pre) + len(suf) <= budget:
            return self._core(pre, suf), False
        if overflow == "error":
            raise InvalidRequestError(
                f"prefix and suffix take {fixed + len(pre) + len(suf)} tokens; this model's "
                f"context leaves room for {budget} besides max_tokens",
                param="prompt",
            )
        pre, suf = _trim(pre, suf, max(budget - fixed, 0))
        return self._core(pre, suf), True

    def _core(self, pre: list[int], suf: list[int]) -> list[int]:
        if self.template.order == "mask":
            return [*pre, self.prefix_id, *suf, self.suffix_id, self.prefix_id]
        if self.template.order == "span":
            return [*pre, self.prefix_id, *suf]
        if self.template.order == "spm":
            ids = [self.suffix_id, *suf, self.prefix_id, *pre]
        else:
            ids = [self.prefix_id, *pre, self.suffix_id, *suf]
        if self.middle_id is not None:
            ids.append(self.middle_id)
        if self.frame_ids is not None:
            opening, closing = self.frame_ids
            return [*opening, *ids, *closing]
        return ids

    def _repo_context(
        self, files: Sequence[FileContext], room: int | None
    ) -> tuple[list[int], int]:
        """Repo header, the newest files that fit (oldest dropped first), then the current
        file's separator. Returns the ids and how many files were kept."""
        fmt = self.template.repo
        assert fmt is not None and self.repo_ids is not None
        encode = self.tokenizer.encode_text
        head = [self.repo_ids.repo, *encode(REPO_NAME + fmt.after_repo_name, leading_space=False)]
        tail = [self.repo_ids.file_sep]
        if not fmt.path_in_prefix:
            tail += encode(f"{CURRENT_FILE}\n", leading_space=False)
        left = None if room is None else room - len(head) - len(tail)
        kept: list[list[int]] = []
        for file in reversed(files):
            block = [
                self.repo_ids.file_sep,
                *encode(f"{file.filename}\n{file.text}{fmt.after_file}", leading_space=False),
            ]
            if left is not None and len(block) > left:
                break
            kept.append(block)
            if left is not None:
                left -= len(block)
        if left is not None and left < 0:
            return [], 0
        body = [token for block in reversed(kept) for token in block]
        return head + body + tail, len(kept)


def _trim(pre: list[int], suf: list[int], room: int) -> tuple[list[int], list[int]]:
    """Keep the end of the prefix and the start of the suffix (the text around the cursor)."""
    keep_suf = min(len(suf), int(room * SUFFIX_SHARE))
    keep_pre = min(len(pre), room - keep_suf)
    keep_suf = min(len(suf), room - keep_pre)
    return pre[len(pre) - keep_pre :], suf[:keep_suf]
