"""Length-prefixed frames between the sandbox harness and its workers.

Replies (and the worker's config): 8-byte HEADER (JSON length, blob length, big-endian u32) +
JSON + blob. Requests to a running zygote: REQUEST (lengths of JSON, blob, tests, code and
program code; op; timeout; memory_mb; report cap; number of per-input time limits) + JSON +
blob + tests + code + program code + limits (big-endian f64 each), so that its C loop
(codeserve/sandbox/_zygote_loop.c) can fork and supervise a candidate without parsing JSON. For a
candidate, the blob is its program and tests its task's checking code (UTF-8); code and
program code are those two compiled by the harness (marshal; empty when the candidate's
process must compile them itself); the JSON holds only what a Plus job adds (bundle, inputs),
and for a call job it is not JSON but "first stop key" (ASCII numbers, stop -1 for all; its
bundle's key), which the C loop reads without a JSON parser; the limits are a call job's, per
input of its slice (the zygote times each input by its record's arrival:
codeserve/sandbox/calls.py). A control frame has JSON and a blob."""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">II")
REQUEST = struct.Struct(">IIIIIBdIII")
OP_CONTROL = 0  # a frame for the zygote itself (bundle, shutdown); the others run a candidate:
OPS = {"exec": 1, "plus": 2, "truth": 3, "call": 4, "record": 5}  # by job kind
KINDS = {op: kind for kind, op in OPS.items()}


def encode_frame(header: dict[str, Any], blob: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return HEADER.pack(len(data), len(blob)) + data + blob


def encode_request(
    header: dict[str, Any] | bytes | None,
    blob: bytes = b"",
    tests: bytes = b"",
    code: bytes = b"",
    program_code: bytes = b"",
    op: int = OP_CONTROL,
    timeout: float = 0.0,
    memory_mb: int = 0,
    cap: int = 0,
    limits: tuple[float, ...] = (),
) -> bytes:
    """A frame for a running zygote; for a candidate, `memory_mb` 0 means its default; a call
    job's header is bytes (see above)."""
    data = header if isinstance(header, bytes) else json.dumps(header).encode() if header else b""
    return (
        REQUEST.pack(
            len(data),
            len(blob),
            len(tests),
            len(code),
            len(program_code),
            op,
            timeout,
            memory_mb,
            cap,
            len(limits),
        )
        + data
        + blob
        + tests
        + code
        + program_code
        + struct.pack(f">{len(limits)}d", *limits)
    )


Request = tuple[int, float, int, int, Any, bytes, bytes, bytes, bytes, tuple[float, ...]]


def read_request(stream: BinaryIO) -> Request | None:
    """(op, timeout, memory_mb, cap, header, blob, tests, code, program_code, limits) from a
    buffered binary stream; None at its end."""
    head = stream.read(REQUEST.size)
    if len(head) < REQUEST.size:
        return None
    *sizes, op, timeout, memory_mb, cap, n_limits = REQUEST.unpack(head)
    parts = [stream.read(n) if n else b"" for n in [*sizes, 8 * n_limits]]
    if [len(p) for p in parts] != [*sizes, 8 * n_limits]:
        return None
    data, blob, tests, code, program_code, limits = parts
    # A call job's header is not JSON; a record job's holds checking code, which the zygote
    # leaves to the child to decode (so no copy of it stays in the zygote's memory).
    header = data if op in (OPS["call"], OPS["record"]) else json.loads(data) if data else {}
    return (
        op,
        timeout,
        memory_mb,
        cap,
        header,
        blob,
        tests,
        code,
        program_code,
        struct.unpack(f">{n_limits}d", limits),
    )


def take_frame(buffer: bytearray) -> tuple[dict[str, Any], bytes] | None:
    """Remove and return the first frame of `buffer` once it is complete, else None (a reader
    multiplexing several pipes keeps its own buffer rather than block on a stream's)."""
    if len(buffer) < HEADER.size:
        return None
    n_json, n_blob = HEADER.unpack_from(buffer)
    end = HEADER.size + n_json + n_blob
    if len(buffer) < end:
        return None
    header = json.loads(buffer[HEADER.size : HEADER.size + n_json])
    blob = bytes(buffer[HEADER.size + n_json : end])
    del buffer[:end]
    return header, blob


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def parse_report(data: bytes, statuses: set[str]) -> tuple[dict[str, Any], bytes] | None:
    """A candidate's verdict frame, if `data` holds a complete, well-formed one."""
    try:
        frame = take_frame(bytearray(data))
    except ValueError:
        return None
    if frame is None or not isinstance(frame[0], dict) or frame[0].get("status") not in statuses:
        return None
    return frame


# What a candidate's process writes when it passed, pre-encoded (the common report).
PASSED_REPORT = encode_frame({"status": "passed"})
