"""A lean HTTP/1.1 client for the sender: keep-alive connections, one pre-encoded write per
request, response bytes handed to a callback with their arrival time as they come in.

Why not aiohttp's client: in an open-loop run every microsecond the event loop spends starting
one request or reading one chunk delays whatever else was due at that moment, which shows up as
send lag. This client does only what a streaming POST needs (status line, headers, chunked or
sized or close-delimited body) at a fraction of the cost per request and per chunk.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

OnData = Callable[[bytes, float], None]

_MAX_HEAD = 64 * 1024


class ConnectFailed(ConnectionError):
    """No connection, or it broke before a response started."""


class ResponseBroken(ConnectionError):
    """The connection broke in the middle of a response body."""


class _Exchange(asyncio.Protocol):
    """One connection; parses one response at a time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reset(None, None)

    def _reset(self, on_data: OnData | None, done: asyncio.Future[int] | None) -> None:
        self.on_data = on_data
        self.done = done
        self.status = 0
        self.head = b""
        self.in_body = False
        self.mode = ""  # "chunked" | "length" | "close"
        self.remaining = 0  # length mode: bytes left; chunked: bytes left in this chunk
        self.buffer = b""
        self.crlf_due = False
        self.last_chunk_seen = False
        self.keep_alive = True
        self.got_bytes = False
        self.error_body = b""

    def start(self, request: bytes, on_data: OnData, done: asyncio.Future[int]) -> None:
        self._reset(on_data, done)
        assert self.transport is not None
        self.transport.write(request)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is None or self.done.done():
            return
        if self.in_body and self.mode == "close":
            self._finish()
        elif self.in_body:
            self.done.set_exception(ResponseBroken("connection closed mid-body"))
        else:
            self.done.set_exception(ConnectFailed("connection closed before a response"))

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            return  # bytes after a finished response: nothing asked for them
        self.got_bytes = True
        now = self.clock()
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > _MAX_HEAD:
                    self._fail(ConnectFailed("response head too large"))
                return
            data = self.head[end + 4 :]
            if not self._parse_head(self.head[:end]):
                return
            if self.mode == "length" and self.remaining == 0:
                self._finish()
                return
        if data:
            self._body(data, now)

    # -- parsing ---------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(ConnectFailed(f"bad status line {lines[0][:80]!r}"))
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        self.keep_alive = parts[0] == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self.mode = "chunked"
        elif b"content-length" in headers:
            self.mode, self.remaining = "length", int(headers[b"content-length"])
        else:
            self.mode, self.keep_alive = "close", False
        self.in_body = True
        return True

    def _deliver(self, data: bytes, now: float) -> None:
        if self.status != 200:
            self.error_body = (self.error_body + data)[:4096]  # only for the error message
        elif data and self.on_data is not None:
            self.on_data(data, now)

    def _body(self, data: bytes, now: float) -> None:
        if self.mode == "length":
            take = data[: self.remaining]
            self.remaining -= len(take)
            self._deliver(take, now)
            if self.remaining == 0:
                self._finish()
        elif self.mode == "close":
            self._deliver(data, now)
        else:
            self._chunked(data, now)

    def _chunked(self, data: bytes, now: float) -> None:
        buf = self.buffer + data if self.buffer else data
        while True:
            if self.remaining:
                take = buf[: self.remaining]
                self._deliver(take, now)
                self.remaining -= len(take)
                buf = buf[len(take) :]
                if self.remaining:
                    break
                self.crlf_due = True
            if self.crlf_due:
                if len(buf) < 2:
                    break
                buf, self.crlf_due = buf[2:], False
            if self.last_chunk_seen:  # optional trailer lines, then an empty line
                if buf.startswith(b"\r\n") or b"\r\n\r\n" in buf:
                    self._finish()
                    return
                break
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                break
            try:
                size = int(buf[:line_end].split(b";", 1)[0], 16)
            except ValueError:
                self._fail(ResponseBroken("bad chunk size"))
                return
            buf = buf[line_end + 2 :]
            if size == 0:
                self.last_chunk_seen = True
            self.remaining = size
        self.buffer = buf

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.status)
        self.on_data = None

    def _fail(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def reusable(self) -> bool:
        return self.keep_alive and not self.closed


class StreamingClient:
    """POSTs to one origin over a pool of keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout_s: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.clock = clock
        host = f"{self.host}:{self.port}" if parts.port else self.host
        lines = [
            f"Host: {host}",
            "Accept: text/event-stream, application/json",
            "User-Agent: codeserve-loadtest",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._head_fields = ("\r\n".join(lines) + "\r\n").encode()
        self._idle: list[_Exchange] = []

    def request_bytes(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {self.prefix}{path} HTTP/1.1\r\n".encode()
            + self._head_fields
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    async def _connect(self) -> _Exchange:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Exchange(self.clock), self.host, self.port, ssl=self.ssl
            )
        except OSError as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        return conn

    def _idle_connection(self) -> _Exchange | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def post(self, request: bytes, on_data: OnData) -> tuple[int, bytes]:
        """Send pre-encoded `request`. A 200 response's body goes to `on_data` as it arrives;
        returns (status, body of a non-200 response) once the response is complete. A kept-alive
        connection the server closed meanwhile is replaced once, transparently."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        for attempt in (0, 1):
            conn = self._idle_connection()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            conn.start(request, on_data, done)
            try:
                status = await asyncio.wait_for(
                    done, max(deadline - asyncio.get_running_loop().time(), 0)
                )
            except ConnectFailed:
                if reused and not conn.got_bytes and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.abort()  # timeout or cancellation: hang up so the server stops generating
                raise
            if conn.reusable:
                self._idle.append(conn)
            else:
                conn.abort()
            return status, conn.error_body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
