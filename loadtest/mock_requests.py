"""Turn an OpenAI request body into the mock's `Plan`, rejecting what vLLM would reject."""

from __future__ import annotations

import itertools
import re
from typing import Any

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_encoding import Kind, Plan, estimate_tokens

_WORDS = re.compile(r"\s*\S+|\s+")


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def _int_field(body: dict[str, Any], name: str, default: int | None, low: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadRequest(f"'{name}' must be an integer >= {low}", name)
    return value


def _prompts(kind: Kind, body: dict[str, Any]) -> list[str]:
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list", "messages")
        parts = []
        for msg in messages:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(content if isinstance(content, str) else "")
        return ["\n".join(parts)]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(p, int) for p in prompt):  # one prompt given as token ids
            return [" ".join(map(str, prompt))]
    raise BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")


def _answer_tokens(
    config: MockConfig, body: dict[str, Any], max_tokens: int
) -> tuple[list[str], str]:
    """Token texts every candidate gets, and the finish reason."""
    words: list[str] = []
    count = max_tokens if config.output_tokens is None else config.output_tokens
    finish = "length"
    if config.output_tokens is None and config.completion_text is not None:
        words = _WORDS.findall(config.completion_text)
        if not body.get("ignore_eos"):
            floor = _int_field(body, "min_tokens", 0, 0) or 0
            count = min(max_tokens, max(len(words), floor))
            # Like an engine: stopping before the limit means the model chose to end.
            finish = "stop" if count < max_tokens else "length"
    padded = itertools.chain(words, itertools.repeat(config.token_text))
    return list(itertools.islice(padded, count)), finish


def build_plan(config: MockConfig, kind: Kind, body: Any, request_id: str) -> Plan:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required", "model")
    if config.strict_model and model != config.model_name:
        raise BadRequest(f"The model `{model}` does not exist.", "model", status=404)
    prompts = _prompts(kind, body)
    n = _int_field(body, "n", 1, 1) or 1
    if n > config.max_n:
        raise BadRequest(f"'n' must be at most {config.max_n}", "n")
    limit_name = (
        "max_completion_tokens"
        if kind == "chat" and "max_completion_tokens" in body
        else "max_tokens"
    )
    max_tokens = _int_field(body, limit_name, config.default_max_tokens, 0)
    assert max_tokens is not None
    tokens, finish = _answer_tokens(config, body, max_tokens)
    logprobs: int | None = None
    raw_lp = body.get("logprobs")
    if kind == "chat" and raw_lp is True:
        logprobs = _int_field(body, "top_logprobs", 0, 0)
    elif kind == "completion" and raw_lp is not None:
        logprobs = _int_field(body, "logprobs", None, 0)
    options = body.get("stream_options")
    return Plan(
        kind=kind,
        model=model,
        prompts=prompts,
        n=n,
        tokens=tokens,
        finish_reason=finish,
        echo=kind == "completion" and bool(body.get("echo")),
        logprobs=logprobs,
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        prompt_tokens=sum(estimate_tokens(p) for p in prompts),
        request_id=request_id,
    )
