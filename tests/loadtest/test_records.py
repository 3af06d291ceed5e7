"""StreamTimer: per-index timing of interleaved SSE chunks, however the bytes are split."""

from __future__ import annotations

import orjson
import pytest

from codeserve.loadtest.records import StreamTimer


def _chunk(index: int, text: str, finish: str | None = None) -> bytes:
    choice = {"index": index, "text": text, "finish_reason": finish}
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


def _usage(total: int) -> bytes:
    return (
        b"data: "
        + orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": total}})
        + b"\n\n"
    )


def test_interleaved_candidates_are_timed_per_index_across_split_reads() -> None:
    timer = StreamTimer(n=2)
    stream = [
        (1.0, _chunk(0, "a") + _chunk(1, "b")[:10]),  # event cut in the middle
        (1.5, _chunk(1, "b")[10:] + _chunk(0, "c")),
        (2.0, _chunk(1, "d", "length")),
        (3.0, _chunk(0, "", "stop") + _usage(4) + b"data: [DONE]\n\n"),
    ]
    for t, data in stream:
        timer.feed(data, t)
    assert timer.outcome_error() is None
    c0, c1 = timer.candidates(origin=0.5)
    assert (c0.ttft_s, c0.e2e_s, c0.tokens, c0.itl_s, c0.finish_reason) == (
        0.5,
        2.5,
        2,
        [0.5],
        "stop",
    )
    assert (c1.ttft_s, c1.e2e_s, c1.tokens, c1.itl_s, c1.finish_reason) == (
        1.0,
        1.5,
        2,
        [0.5],
        "length",
    )
    assert c0.tpot_s == pytest.approx(2.0)  # (e2e - ttft) / (tokens - 1)
    assert timer.prompt_tokens == 3


def test_chat_deltas_and_kept_texts() -> None:
    timer = StreamTimer(n=1, keep_text=True)
    for t, content in enumerate(["def", " f", "():"]):
        delta = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
        timer.feed(b"data: " + orjson.dumps(delta) + b"\n\n", float(t))
    timer.feed(
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
        3.0,
    )
    (c,) = timer.candidates(origin=0.0)
    assert c.text == "def f():" and c.tokens == 3 and c.e2e_s == 3.0


def test_usage_rescales_chunk_counts_when_chunks_carry_several_tokens() -> None:
    timer = StreamTimer(n=2)
    timer.feed(
        _chunk(0, "ab", "length") + _chunk(1, "cd", "length") + _usage(8) + b"data: [DONE]\n\n", 1.0
    )
    assert [c.tokens for c in timer.candidates(0.0)] == [4, 4]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_chunk(0, "a"), "incomplete_stream"),
        (_chunk(0, "a", "stop") + b"data: [DONE]\n\n", "missing_candidates"),
        (b'data: {"error": {"message": "boom"}}\n\n', "stream_error"),
        (b"data: {not json\n\n", "bad_chunk"),
    ],
)
def test_broken_streams_are_named(data: bytes, error: str) -> None:
    timer = StreamTimer(n=2)
    timer.feed(data, 0.0)
    assert timer.outcome_error() == error
