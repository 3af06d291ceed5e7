"""Reading a Server-Sent-Events body (`text/event-stream`), as OpenAI-compatible servers stream
completions: one incremental reader for the eval harness, the load tester and the tests.

Bytes go in as they arrive, in pieces cut anywhere; each complete event's data comes out, through
a callback, at the moment the blank line that ends it has arrived, so a caller that timestamps
events (the load tester) stamps each with the read that completed it. Per the SSE spec, an event's
`data:` lines are joined with "\\n" and one space after the colon is dropped; comments (`: ...`,
which servers send as keep-alives), other fields (`event:`, `id:`, `retry:`) and data-less events
are skipped, and an unfinished event at the end is dropped. Lines end in LF or CRLF (a lone CR,
which no HTTP server sends, is not taken as a line end).

It works on bytes and allocates nothing per event beyond the data slice it hands over: the load
tester runs it on every chunk of every request while it keeps its send schedule.
"""

from __future__ import annotations

from collections.abc import Callable

DONE = b"[DONE]"  # the data of OpenAI's last event


class SSEDecoder:
    """`decoder = SSEDecoder(on_data)`, then `decoder.feed(piece)` for every piece of the body;
    `on_data(data)` is called once per complete event with data, in order. An exception raised
    by `on_data` propagates out of `feed`."""

    __slots__ = ("_on_data", "_buffer", "_data")

    def __init__(self, on_data: Callable[[bytes], object]) -> None:
        self._on_data = on_data
        self._buffer = b""  # the start of a line whose end has not arrived
        self._data: bytes | None = None  # data of the event being read

    def feed(self, piece: bytes) -> None:
        buffer = self._buffer + piece if self._buffer else piece
        find = buffer.find
        data = self._data
        start = 0
        while (end := find(b"\n", start)) >= 0:
            if end == start or (end == start + 1 and buffer[start] == 13):  # blank: dispatch
                if data is not None:
                    # Cleared first: a callback that raises leaves no half event behind.
                    self._data = None
                    self._on_data(data)
                    data = None
            elif buffer.startswith(b"data:", start):
                stop = end - 1 if buffer[end - 1] == 13 else end
                begin = start + 6 if buffer[start + 5] == 32 and start + 5 < stop else start + 5
                value = buffer[begin:stop]
                data = value if data is None else data + b"\n" + value
            start = end + 1
        self._data = data
        self._buffer = buffer[start:] if start < len(buffer) else b""


def data_of(body: bytes) -> list[bytes]:
    """The data of every complete event of a whole body, `[DONE]` included."""
    events: list[bytes] = []
    SSEDecoder(events.append).feed(body)
    return events
