"""Request limits the gateway enforces before anything reaches an engine."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from codeserve.server.config import Settings
from codeserve.server.errors import InvalidRequestError
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:
    from codeserve.server.fim.tokenizer import ModelTokenizer

# Completions' max_tokens when the request sets none (vLLM, like OpenAI).
ENGINE_DEFAULT_MAX_TOKENS = 16
# Every token covers at least one UTF-8 byte (byte-level BPE; SentencePiece falls back to
# bytes), plus the few a tokenizer adds itself (BOS): a text of at most `room - this` bytes
# cannot overflow the context and is not tokenized.
_ADDED_TOKENS = 4


def check_limits(
    req: CompletionRequest | ChatCompletionRequest, settings: Settings, max_model_len: int | None
) -> None:
    prompts = req.prompt_count() if isinstance(req, CompletionRequest) else 1
    # best_of candidates are generated too (and only n returned): they cost the same memory.
    best_of = req.best_of if isinstance(req, CompletionRequest) and req.best_of else 1
    per_prompt = max(req.n, best_of)
    if per_prompt * prompts > settings.max_n:
        what = "n" if per_prompt == req.n else "best_of"
        raise InvalidRequestError(
            f"{what} x prompts = {per_prompt * prompts} exceeds the limit of {settings.max_n} "
            "candidates per request",
            param=what,
        )
    max_tokens = req.max_tokens
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        max_tokens = req.max_completion_tokens
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens = {max_tokens} exceeds the limit of {settings.max_tokens_limit}",
            param="max_tokens",
        )
    if req.min_tokens is not None and req.min_tokens > (max_tokens or settings.max_tokens_limit):
        raise InvalidRequestError(
            f"min_tokens = {req.min_tokens} exceeds max_tokens = "
            f"{max_tokens or settings.max_tokens_limit}",
            param="min_tokens",
        )
    if max_tokens is not None and max_model_len is not None and max_tokens >= max_model_len:
        raise InvalidRequestError(
            f"max_tokens = {max_tokens} leaves no room for the prompt in this model's context "
            f"of {max_model_len} tokens",
            param="max_tokens",
        )
    stops = req.stop_list()
    if len(stops) > settings.max_stop:
        raise InvalidRequestError(
            f"{len(stops)} stop sequences given; at most {settings.max_stop} are allowed",
            param="stop",
        )
    if any(len(s) > settings.max_stop_chars for s in stops):
        raise InvalidRequestError(
            f"stop sequences are limited to {settings.max_stop_chars} characters", param="stop"
        )
    logprobs = req.top_logprobs if isinstance(req, ChatCompletionRequest) else req.logprobs
    if logprobs is not None and logprobs > settings.max_logprobs:
        raise InvalidRequestError(
            f"logprobs = {logprobs} exceeds the limit of {settings.max_logprobs}",
            param="logprobs" if isinstance(req, CompletionRequest) else "top_logprobs",
        )
    if isinstance(req, CompletionRequest) and req.best_of is not None and req.best_of < req.n:
        raise InvalidRequestError("best_of must be at least n", param="best_of")
    if isinstance(req, CompletionRequest) and max_model_len is not None:
        longest = _longest_token_prompt(req)
        if longest is not None:
            _check_context(longest, req.max_tokens, max_model_len)


async def check_prompt_fits(
    req: CompletionRequest, tokenizer: ModelTokenizer | None, max_model_len: int | None
) -> None:
    """Text prompts measured with the model's own tokenizer (as the engine will), so an
    overflow is a 400 with the numbers before the engine is asked. Only prompts that might not
    fit are tokenized, off the event loop: short ones cost nothing."""
    if tokenizer is None or max_model_len is None:
        return
    room = max_model_len - (req.max_tokens or ENGINE_DEFAULT_MAX_TOKENS) - _ADDED_TOKENS
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    long = [p for p in prompts if isinstance(p, str) and len(p.encode()) > room]
    if not long:
        return
    counts = await asyncio.to_thread(lambda: [len(tokenizer.encode_prompt(p)) for p in long])
    _check_context(max(counts), req.max_tokens, max_model_len)


def _check_context(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> None:
    generated = max_tokens or ENGINE_DEFAULT_MAX_TOKENS
    if prompt_tokens + generated > max_model_len:
        raise InvalidRequestError(
            f"prompt of {prompt_tokens} tokens + max_tokens {generated} exceeds this model's "
            f"context of {max_model_len} tokens",
            param="prompt",
        )


def _longest_token_prompt(req: CompletionRequest) -> int | None:
    """Length of the longest token-id prompt (text prompts: `check_prompt_fits`)."""
    p = req.prompt
    if isinstance(p, list) and p and isinstance(p[0], int):
        return len(p)
    if isinstance(p, list) and p and isinstance(p[0], list):
        return max(len(ids) for ids in p if isinstance(ids, list))
    return None
