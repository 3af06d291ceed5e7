"""Length-prefixed frames between the sandbox harness and its workers (both directions):
8-byte header (JSON length, blob length, big-endian u32) + JSON + blob."""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">II")


def encode_frame(header: dict[str, Any], blob: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return HEADER.pack(len(data), len(blob)) + data + blob


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """One frame from a buffered binary stream; None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    n_json, n_blob = HEADER.unpack(head)
    data = stream.read(n_json)
    blob = stream.read(n_blob) if n_blob else b""
    if len(data) < n_json or len(blob) < n_blob:
        return None
    return json.loads(data), blob


def take_frame(buffer: bytearray) -> tuple[dict[str, Any], bytes] | None:
    """Remove and return the first frame of `buffer` once it is complete, else None (a reader
    multiplexing several pipes keeps its own buffer rather than block on a stream's)."""
    if len(buffer) < HEADER.size:
        return None
    n_json, n_blob = HEADER.unpack_from(buffer)
    end = HEADER.size + n_json + n_blob
    if len(buffer) < end:
        return None
    header = json.loads(buffer[HEADER.size:HEADER.size + n_json])
    blob = bytes(buffer[HEADER.size + n_json:end])
    del buffer[:end]
    return header, blob


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def parse_report(data: bytes, statuses: set[str]) -> tuple[dict[str, Any], bytes] | None:
    """A candidate's verdict frame, if `data` holds a complete, well-formed one."""
    try:
        frame = take_frame(bytearray(data))
    except ValueError:
        return None
    if frame is None or not isinstance(frame[0], dict) or frame[0].get("status") not in statuses:
        return None
    return frame
