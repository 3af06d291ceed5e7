"""The sender's HTTP/1.1 client against a raw TCP server sending hand-made responses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from codeserve.loadtest.http_client import ConnectFailed, ResponseBroken, StreamingClient


@asynccontextmanager
async def raw_server(script: Callable[..., object]) -> AsyncIterator[tuple[str, list[int]]]:
    """Runs `script(reader, writer, connection_no)` per connection after reading a request
    head and body; yields the base URL and a list recording connections."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        number = len(conns) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if await script(writer, number) is False:  # type: ignore[misc]
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", conns
    finally:
        server.close()


def _client(url: str, timeout: float = 5.0) -> tuple[StreamingClient, bytes]:
    client = StreamingClient(url, {"Content-Type": "application/json"}, timeout)
    return client, client.request_bytes("/completions", b'{"x": 1}')


async def test_chunked_body_dribbled_byte_by_byte_with_extensions_and_trailers() -> None:
    payload = b"data: one\n\ndata: [DONE]\n\n"
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire += (
        b"b;ext=1\r\n"
        + payload[:11]
        + b"\r\n"
        + b"%x\r\n" % (len(payload) - 11)
        + payload[11:]
        + b"\r\n"
    )
    wire += b"0\r\nX-Trailer: t\r\n\r\n"

    async def script(writer: asyncio.StreamWriter, number: int) -> None:
        for i in range(len(wire)):
            writer.write(wire[i : i + 1])
            await writer.drain()

    async with raw_server(script) as (url, conns):
        client, req = _client(url)
        got: list[bytes] = []
        assert await client.post(req, lambda data, now: got.append(data)) == (200, b"")
        assert b"".join(got) == payload
        assert await client.post(req, lambda data, now: None) == (200, b"")
        assert len(conns) == 1  # kept alive and reused


async def test_error_status_returns_its_body_and_close_delimited_bodies_end_at_close() -> None:
    async def error(writer: asyncio.StreamWriter, number: int) -> None:
        body = b'{"error": {"message": "nope"}}'
        writer.write(b"HTTP/1.1 429 Too Many\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async with raw_server(error) as (url, _):
        client, req = _client(url)
        got: list[bytes] = []
        assert await client.post(req, lambda data, now: got.append(data)) == (
            429,
            b'{"error": {"message": "nope"}}',
        )
        assert got == []

    async def until_close(writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\ndata: a\n\n")
        await writer.drain()
        return False

    async with raw_server(until_close) as (url, conns):
        client, req = _client(url)
        got = []
        assert await client.post(req, lambda data, now: got.append(data)) == (200, b"")
        assert b"".join(got) == b"data: a\n\n"
        await client.post(req, lambda data, now: None)
        assert len(conns) == 2  # not reused


async def test_broken_bodies_stale_connections_refusals_and_timeouts() -> None:
    async def dies(writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        await writer.drain()
        return False

    async with raw_server(dies) as (url, _):
        client, req = _client(url)
        with pytest.raises(ResponseBroken):
            await client.post(req, lambda data, now: None)

    async def answers_then_hangs_up(writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes the kept-alive connection behind the client's back

    async with raw_server(answers_then_hangs_up) as (url, conns):
        client, req = _client(url)
        assert (await client.post(req, lambda d, t: None))[0] == 200
        await asyncio.sleep(0.05)
        assert (await client.post(req, lambda d, t: None))[0] == 200
        assert len(conns) == 2

    async def never_answers(writer: asyncio.StreamWriter, number: int) -> None:
        await asyncio.sleep(30)

    async with raw_server(never_answers) as (url, conns):
        client, req = _client(url, timeout=0.2)
        with pytest.raises(TimeoutError):
            await client.post(req, lambda d, t: None)
        assert client._idle == []  # the timed-out connection was hung up, not pooled

    client, req = _client(url)  # that server is gone now
    with pytest.raises(ConnectFailed):
        await client.post(req, lambda d, t: None)
