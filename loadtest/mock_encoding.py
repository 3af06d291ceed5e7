"""Wire bytes of the mock upstream's answers, in vLLM's shapes.

The mock must cost far less per request than whatever it is used to measure (the gateway's
overhead benchmark), so streamed chunks are glued from pre-encoded byte pieces instead of
serialising a dict per token; only whole (non-streamed) bodies go through orjson.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from codeserve.common.error_object import error_object

Kind = Literal["completion", "chat"]

_FINISH_NULL = b"null"
_LOGPROB = -0.25  # constant: the mock has no model, only the shape matters


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def estimate_tokens(text: str) -> int:
    """Whitespace words; the synthetic prompts of the load tester use one word per token."""
    return max(1, len(text.split()))


@dataclass
class Plan:
    """What one request will produce: the same token texts for every candidate."""

    kind: Kind
    model: str
    prompts: list[str]  # one per prompt of a batched completions request
    n: int
    tokens: list[str]
    finish_reason: str
    echo: bool = False
    logprobs: int | None = None  # None: no logprobs; k: k top alternatives per token
    include_usage: bool = False
    prompt_tokens: int = 0
    request_id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    def usage(self) -> dict[str, int]:
        completion = len(self.tokens) * self.choices
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def _completion_logprobs(tokens: list[str], top: int, offset: int) -> dict[str, Any]:
    offsets, pos = [], offset
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok)
    return {
        "tokens": tokens,
        "token_logprobs": [_LOGPROB] * len(tokens),
        "top_logprobs": [{tok: _LOGPROB} for tok in tokens] if top else None,
        "text_offset": offsets,
    }


def _chat_logprobs(tokens: list[str], top: int) -> dict[str, Any]:
    def entry(tok: str) -> dict[str, Any]:
        return {"token": tok, "logprob": _LOGPROB, "bytes": list(tok.encode())}

    return {"content": [{**entry(t), "top_logprobs": [entry(t)] if top else []} for t in tokens]}


class StreamEncoder:
    """SSE events for one streamed request: one event per (token, candidate)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        head = {"id": plan.request_id, "object": "", "created": plan.created, "model": plan.model}
        if plan.kind == "chat":
            head["object"] = "chat.completion.chunk"
        else:
            head["object"] = "text_completion"
        self._head = b"data: " + _json(head)[:-1] + b',"choices":[{"index":'
        self._token_json = [_json(t) for t in plan.tokens]
        self._finish = _json(plan.finish_reason)

    def _event(self, index: int, step: int) -> bytes:
        plan = self.plan
        last = step == len(plan.tokens) - 1
        text = plan.tokens[step]
        text_json = self._token_json[step]
        if plan.echo and step == 0:
            text = plan.prompts[index // plan.n] + text
            text_json = _json(text)
        finish = self._finish if last else _FINISH_NULL
        logprobs = _FINISH_NULL
        if plan.logprobs is not None:
            logprobs = _json(
                _chat_logprobs([text], plan.logprobs)
                if plan.kind == "chat"
                else _completion_logprobs([text], plan.logprobs, 0)
            )
        if plan.kind == "chat":
            role = b'"role":"assistant",' if step == 0 else b""
            body = b',"delta":{' + role + b'"content":' + text_json + b"}"
        else:
            body = b',"text":' + text_json
        return (
            self._head
            + b"%d" % index
            + body
            + b',"logprobs":'
            + logprobs
            + b',"finish_reason":'
            + finish
            + b"}]}\n\n"
        )

    def step(self, step: int) -> bytes:
        """All candidates' events for token `step`, interleaved by index like vLLM."""
        return b"".join(self._event(i, step) for i in range(self.plan.choices))

    def empty_finish(self) -> bytes:
        """Zero-token answers still tell each candidate that it finished."""
        plan = self.plan
        delta = (
            b',"delta":{"role":"assistant","content":""}' if plan.kind == "chat" else b',"text":""'
        )
        return b"".join(
            self._head
            + b"%d" % i
            + delta
            + b',"logprobs":null,"finish_reason":'
            + self._finish
            + b"}]}\n\n"
            for i in range(plan.choices)
        )

    def tail(self) -> bytes:
        plan = self.plan
        out = b""
        if plan.include_usage:
            out += (
                b"data: "
                + self._head[6 : -len(b'[{"index":')]
                + b'[],"usage":'
                + _json(plan.usage())
                + b"}\n\n"
            )
        return out + b"data: [DONE]\n\n"


def full_body(plan: Plan) -> bytes:
    """The non-streamed answer."""
    text = "".join(plan.tokens)
    choices = []
    for index in range(plan.choices):
        prompt = plan.prompts[index // plan.n] if plan.echo else ""
        choice: dict[str, Any] = {"index": index}
        if plan.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
            choice["logprobs"] = (
                _chat_logprobs(plan.tokens, plan.logprobs) if plan.logprobs is not None else None
            )
        else:
            choice["text"] = prompt + text
            choice["logprobs"] = (
                _completion_logprobs(plan.tokens, plan.logprobs, len(prompt))
                if plan.logprobs is not None
                else None
            )
        choice["finish_reason"] = plan.finish_reason
        choices.append(choice)
    return _json(
        {
            "id": plan.request_id,
            "object": "chat.completion" if plan.kind == "chat" else "text_completion",
            "created": plan.created,
            "model": plan.model,
            "choices": choices,
            "usage": plan.usage(),
        }
    )


def error_body(message: str, status: int, param: str | None = None) -> bytes:
    kind = "invalid_request_error" if status < 500 else "internal_error"
    if status == 429:
        kind = "rate_limit_error"
    return _json(error_object(message, kind, param=param, code=status))


def models_body(name: str, created: int) -> bytes:
    card = {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "codeserve-mock",
        "root": name,
    }
    return _json({"object": "list", "data": [card]})
