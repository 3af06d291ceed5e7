"""OpenAI completion requests in the form `transformers serve` honours, and its answers back.

`transformers serve` (transformers 5.19) reads `prompt` (text only), `max_tokens`, `stream`,
`seed`, `stop` (as `stop_strings`) and a `generation_config` JSON that replaces the model's
defaults; it ignores `n`, `logprobs`, `echo`, `best_of` and `presence_penalty` silently and maps
`frequency_penalty` onto a different knob. The gateway therefore sends sampling only through
`generation_config`, and refuses with a 400 whatever would otherwise be dropped or changed in
meaning: the client learns at once instead of getting an answer to a question it did not ask.

A FIM prompt arrives here as token ids (rendered token-exact by codeserve.server.fim). The
server tokenizes text itself, so the ids go as their decoded text, and only if that text
tokenizes back to exactly the same ids: the check also refuses code whose text the engine would
read as control tokens (e.g. a literal `<|mask:0|>` in the prefix), which could not be sent
escaped as it is to vLLM.
"""

from __future__ import annotations

from typing import Any

import orjson

from codeserve.server.errors import InvalidRequestError, UpstreamError
from codeserve.server.fim.tokenizer import ModelTokenizer
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest

BACKEND = "the transformers engine of this model"


def _refuse(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{message}: not supported by {BACKEND}", param=param)


def _check_supported(req: CompletionRequest) -> None:
    if req.n != 1:
        raise _refuse("`n` > 1 (one completion per request)", "n")
    if req.best_of not in (None, 1):
        raise _refuse("`best_of` > 1", "best_of")
    if req.logprobs is not None:
        raise _refuse("`logprobs`", "logprobs")
    if req.echo:
        raise _refuse("`echo`", "echo")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise _refuse(f"`{name}` (use `repetition_penalty`)", name)
    if req.logit_bias:
        raise _refuse("`logit_bias`", "logit_bias")
    if req.include_stop_str_in_output:
        raise _refuse("`include_stop_str_in_output`", "include_stop_str_in_output")
    if req.skip_special_tokens is False:
        raise _refuse("`skip_special_tokens: false`", "skip_special_tokens")


def prompt_text(prompt: Any, tokenizer: ModelTokenizer | None) -> str:
    """The one text prompt the server takes; token ids (FIM) as text that tokenizes back."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1:
        return prompt_text(prompt[0], tokenizer)
    if not (isinstance(prompt, list) and prompt and all(isinstance(i, int) for i in prompt)):
        raise _refuse("several prompts in one request (send one per request)", "prompt")
    if tokenizer is None:
        raise _refuse("a prompt of token ids", "prompt")
    ids = [int(i) for i in prompt]
    # The server's tokenizer adds the BOS (and T5's closing </s>) itself.
    lead, trail = tokenizer.leading_ids, tokenizer.trailing_ids
    body = ids[len(lead) :] if lead and ids[: len(lead)] == lead else ids
    body = body[: len(body) - len(trail)] if trail and body[-len(trail) :] == trail else body
    text = tokenizer.decode(body)
    if tokenizer.encode_prompt(text) != ids:
        raise InvalidRequestError(
            f"this prompt cannot be sent to {BACKEND}, which tokenizes text itself: as text it "
            "would not give the same tokens (it contains a control-token spelling, or text "
            "that tokenizes differently once joined)",
            param="prompt",
            code="tokenizer_injection",
        )
    return text


def generation_config(req: CompletionRequest, eos_ids: list[int]) -> dict[str, Any]:
    """Sampling as transformers' GenerationConfig fields (unset ones keep the model's)."""
    temperature = 1.0 if req.temperature is None else req.temperature  # OpenAI's default
    config: dict[str, Any] = {"do_sample": temperature > 0}
    if temperature > 0:
        config["temperature"] = temperature
        if req.top_p is not None:
            config["top_p"] = req.top_p
        if req.top_k is not None and req.top_k > 0:
            config["top_k"] = req.top_k
        if req.min_p:
            config["min_p"] = req.min_p
    if req.repetition_penalty is not None:
        config["repetition_penalty"] = req.repetition_penalty
    stops = [*eos_ids, *(req.stop_token_ids or [])]
    if req.ignore_eos:
        stops = list(req.stop_token_ids or [])
    if stops:
        config["eos_token_id"] = list(dict.fromkeys(stops))
    if req.min_tokens:
        config["min_new_tokens"] = req.min_tokens
    return config


def engine_body(
    req: CompletionRequest | ChatCompletionRequest,
    data: dict[str, Any],
    tokenizer: ModelTokenizer | None,
    eos_ids: list[int],
    encoder_decoder: bool,
    max_tokens: int,
) -> dict[str, Any]:
    """The body for `transformers serve`'s /v1/completions from the gateway's prepared `data`
    (FIM already applied: its stop tokens are in `data["stop_token_ids"]`)."""
    if isinstance(req, ChatCompletionRequest):
        raise InvalidRequestError(
            f"chat completions are not served by {BACKEND} (a base code model): "
            "use /v1/completions",
            param="messages",
        )
    _check_supported(req)
    req = req.model_copy(update={"stop_token_ids": data.get("stop_token_ids")})
    body: dict[str, Any] = {
        "prompt": prompt_text(data.get("prompt"), tokenizer),
        "max_tokens": max_tokens,
        "generation_config": orjson.dumps(generation_config(req, eos_ids)).decode(),
        # transformers serve's non-streamed answer cuts an encoder-decoder's output at the
        # prompt's length (it assumes the output continues the prompt); its stream is right,
        # so those are always streamed and collected by the gateway (`collect_stream`).
        "stream": req.stream or encoder_decoder,
    }
    if req.seed is not None:
        body["seed"] = req.seed
    if req.stop_list():
        # The engine stops generating at them; the gateway cuts them from the text (the
        # engine keeps them), as vLLM does.
        body["stop"] = req.stop_list()
    return body


def collect_stream(raw: bytes, model: str) -> bytes:
    """A non-streamed completion assembled from the engine's SSE stream."""
    text: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    first: dict[str, Any] = {}
    for event in raw.split(b"\n\n"):
        event = event.strip()
        if not event.startswith(b"data: {"):
            continue
        chunk = orjson.loads(event[6:])
        if "error" in chunk:
            raise UpstreamError(502, f"{BACKEND} failed: {chunk['error']}")
        first = first or chunk
        for choice in chunk.get("choices") or []:
            text.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
        usage = chunk.get("usage") or usage
    answer = {
        "id": first.get("id", ""),
        "object": "text_completion",
        "created": first.get("created", 0),
        "model": model,
        "choices": [{"index": 0, "text": "".join(text), "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    return orjson.dumps(answer)


_USAGE_KEY = b'"usage":{'


def split_usage(events: bytes) -> bytes:
    """transformers serve puts the usage on its last chunk, beside `finish_reason`; OpenAI (and
    vLLM) send it as a chunk of its own with empty `choices`, which the gateway counts in its
    metrics and drops unless the client asked for it: reshape to that."""
    if _USAGE_KEY not in events:
        return events
    out: list[bytes] = []
    for event in events.split(b"\n\n"):
        if not event:
            continue
        if _USAGE_KEY in event and event.startswith(b"data: {"):
            chunk = orjson.loads(event[6:])
            usage = chunk.pop("usage", None)
            out.append(b"data: " + orjson.dumps(chunk))
            if usage:
                out.append(b"data: " + orjson.dumps({**chunk, "choices": [], "usage": usage}))
        else:
            out.append(event)
    return b"".join(e + b"\n\n" for e in out)
