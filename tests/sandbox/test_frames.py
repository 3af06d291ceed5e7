"""The sandbox's wire formats (codeserve/sandbox/frames.py) and the harness's verdicts on what a candidate
left behind (codeserve/sandbox/verdicts.py)."""

from __future__ import annotations

import io
import os
import signal

import pytest

from codeserve.sandbox.calls import job_header, read_job_header
from codeserve.sandbox.frames import (
    OPS,
    PASSED_REPORT,
    encode_frame,
    encode_request,
    read_request,
    take_frame,
)
from codeserve.sandbox.verdicts import judge


def test_requests_round_trip_in_a_stream() -> None:
    stream = io.BytesIO(
        encode_request(
            {"bundle": "k", "inputs": [0, 3]},
            "prog é".encode(),
            b"tests",
            b"\x00code",
            b"\x01prog",
            OPS["plus"],
            2.5,
            64,
            1 << 16,
        )
        + encode_request(
            job_header("k é", (2, 5)),
            b"def f(): pass",
            b"case",
            b"",
            b"\x02prog",
            OPS["call"],
            1.0,
            0,
            1 << 20,
            (4.0, 0.25, 8.5),
        )
        + encode_request(None, b"print(1)", op=OPS["exec"], timeout=3.0)
        + encode_request({"kind": "shutdown"})
    )
    assert read_request(stream) == (
        OPS["plus"],
        2.5,
        64,
        1 << 16,
        {"bundle": "k", "inputs": [0, 3]},
        "prog é".encode(),
        b"tests",
        b"\x00code",
        b"\x01prog",
        (),
    )
    # A call job's header is "first stop [key]", not JSON: the C loop reads it as it is.
    call = read_request(stream)
    assert call == (
        OPS["call"],
        1.0,
        0,
        1 << 20,
        "2 5 k é".encode(),
        b"def f(): pass",
        b"case",
        b"",
        b"\x02prog",
        (4.0, 0.25, 8.5),
    )
    assert read_job_header(call[4]) == ("k é", range(2, 5))
    assert read_job_header(job_header(None, None)) == (None, None)
    assert read_request(stream) == (OPS["exec"], 3.0, 0, 0, {}, b"print(1)", b"", b"", b"", ())
    assert read_request(stream)[4] == {"kind": "shutdown"}
    assert read_request(stream) is None


def test_a_cut_request_reads_as_the_end() -> None:
    data = encode_request(None, b"x" * 100, op=OPS["exec"], timeout=1.0)
    assert read_request(io.BytesIO(data[:-1])) is None


def test_take_frame_waits_for_the_whole_frame() -> None:
    frame = encode_frame({"status": "passed"}, b"blob")
    buffer = bytearray(frame[:-1])
    assert take_frame(buffer) is None
    buffer += frame[-1:] + frame
    assert take_frame(buffer) == ({"status": "passed"}, b"blob")
    assert take_frame(buffer) == ({"status": "passed"}, b"blob") and not buffer


def _exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize(
    "status,report,timed_out,oom,expected",
    [
        (_exited(0), PASSED_REPORT, False, False, {"status": "passed"}),
        (_exited(0), PASSED_REPORT, True, False, {"status": "timeout"}),
        (
            _exited(0),
            encode_frame({"status": "failed", "detail": "line 2"}),
            False,
            False,
            {"status": "failed", "detail": "line 2"},
        ),
        # A report that does not parse, or claims a status that does not exist, proves nothing.
        (
            _exited(0),
            PASSED_REPORT[:-1],
            False,
            False,
            {"status": "error", "error_type": "SystemExit"},
        ),
        (
            _exited(3),
            encode_frame({"status": "great"}),
            False,
            False,
            {"status": "error", "detail": "the program exited (status 3) before a verdict"},
        ),
        (signal.SIGKILL, b"", False, True, {"status": "memory"}),
        (signal.SIGKILL, b"", False, False, {"status": "killed", "detail": "killed by SIGKILL"}),
        (
            signal.SIGXCPU,
            b"",
            False,
            False,
            {"status": "timeout", "detail": "CPU time limit exceeded"},
        ),
    ],
)
def test_judge(
    status: int, report: bytes, timed_out: bool, oom: bool, expected: dict[str, str]
) -> None:
    assert os.WIFSIGNALED(signal.SIGKILL) and os.WIFEXITED(_exited(3))
    header, payload = judge(status, report, timed_out, lambda: oom)
    assert header.items() >= expected.items() and payload == b""


def test_judge_returns_a_truth_payload_and_asks_for_oom_only_without_a_report() -> None:
    asked = []
    report = encode_frame({"status": "passed"}, b"pickled outputs")
    assert judge(0, report, False, lambda: asked.append(1) or True) == (
        {"status": "passed"},
        b"pickled outputs",
    )
    assert not asked
