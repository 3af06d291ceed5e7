"""SSEDecoder: the one incremental reader of Server-Sent-Events bodies."""

from __future__ import annotations

import pytest

from codeserve.common.sse import SSEDecoder, data_of

BODY = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b'event: note\r\nid: 7\r\ndata:{"b": 2}\r\n\r\n'
    b"data: first\ndata:  second\n\n"
    b"data:\n\n"
    b"id: no data\n\n"
    b"data: [DONE]\n\n"
    b"data: torn"
)
EXPECTED = [b'{"a": 1}', b'{"b": 2}', b"first\n second", b"", b"[DONE]"]


def test_reads_data_per_spec_skipping_comments_fields_and_the_torn_end() -> None:
    assert data_of(BODY) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_pieces_cut_anywhere_give_the_same_events(size: int) -> None:
    got: list[bytes] = []
    decoder = SSEDecoder(got.append)
    for i in range(0, len(BODY), size):
        decoder.feed(BODY[i : i + size])
    assert got == EXPECTED


def test_an_event_comes_out_with_the_piece_that_ends_it() -> None:
    seen: list[tuple[int, bytes]] = []
    piece = 0
    decoder = SSEDecoder(lambda data: seen.append((piece, data)))
    for piece, part in enumerate(  # noqa: B007  (the callback reads `piece`)
        [b"data: x", b"\n", b"\ndata: y\n\ndata: z\n\n"]
    ):
        decoder.feed(part)
    assert seen == [(2, b"x"), (2, b"y"), (2, b"z")]


def test_a_raising_callback_leaves_no_half_event_behind() -> None:
    got: list[bytes] = []

    def take(data: bytes) -> None:
        if data == b"bad":
            raise ValueError(data)
        got.append(data)

    decoder = SSEDecoder(take)
    with pytest.raises(ValueError, match="bad"):
        decoder.feed(b"data: bad\n\n")
    decoder.feed(b"data: good\n\n")
    assert got == [b"good"]
