"""Call jobs: a candidate's process computes its entry point's outputs; the harness judges them.

A "call" job runs the candidate's program (then a task's trusted set-up code, e.g. MBPP's
imports), looks up the entry point and calls it on each input of the job's slice, and writes
what it got, one record per input, to the pipe its zygote reads. The zygote relays those bytes,
framed with how the process ended (codeserve/sandbox/zygote.py); the harness parses them here
and a judge registered with the pool (the scorer's, codeserve/scoring/judge.py) compares them
with the expected outputs, which never leave the harness.

Nothing the candidate's process writes is a verdict: a record only says "my output for input i
is this value" (or "raised this", or "cannot be serialised"). Whatever bytes its code writes to
that pipe, the best it can do is claim outputs, and a claim only passes if it equals the
expected output it never saw. So the channel needs no secret: its integrity is that the
zygote's framing (how the process ended, where its bytes end) is written by the zygote, which
candidates cannot reach, and that the expected outputs stay in the harness.

Records: u32 length (big-endian) + body; the body starts with its kind:
    R                                the program ran and defines the entry point
    X  category, error type, detail  the program failed before any input (raised, no function)
    V  u32 index, value              the output for input `index` (codeserve.sandbox.values)
    P  u32 index, value (a bool)     not-None oracles: whether the output was not None
    B  u32 index, value (a bool)     `assert f(x)` / `assert not f(x)`: the output's truth value
    H  u32 index, u64 size, sha256   an output too big to send (over values.INLINE_MAX)
    E  u32 index, category, error type, detail   the call raised
    U  u32 index, reason             the output is not plain data
    O  text                          what the program printed (information only)
category: a (AssertionError), m (MemoryError), e (anything else). Error type: u16 length + text.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from codeserve.sandbox import values

_LEN = struct.Struct(">I")
_INDEX = struct.Struct(">I")
_NAME = struct.Struct(">H")
_SIZE = struct.Struct(">Q")
READY = _LEN.pack(1) + b"R"
# What the zygote counts as an input answered, for per-input time limits (see its supervise).
ANSWERS = b"VPBHEU"
DETAIL_CHARS = 300


class CallCase:
    """What a worker holds for one task's call jobs (sent once, pickled by our harness): the
    inputs, never the expected outputs. `exprs` maps input indices whose arguments are not
    plain data (objects the task's set-up code builds, e.g. MBPP's trees) to their source,
    evaluated in the program's globals after `setup`; the outputs of inputs in `truths` are
    only checked for their truth value (`assert f(x)`), so that is what is sent."""

    def __init__(
        self,
        entry_point: str,
        inputs: list[list[Any]],
        setup: str = "",
        exprs: dict[int, str] | None = None,
        presence: bool = False,
        truths: frozenset[int] = frozenset(),
    ) -> None:
        self.entry_point = entry_point
        self.inputs = inputs
        self.setup = setup
        self.exprs = exprs or {}
        self.presence = presence  # "not None" oracle: send whether a non-bool output is not None
        self.truths = truths
        self.setup_code: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "setup_code"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        # Compiled once where it is loaded (the zygote), not in every candidate.
        self.setup_code = (
            compile(self.setup, "<setup>", "exec", dont_inherit=True) if self.setup else None
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is CallCase and self.__getstate__() == other.__getstate__()


def job_header(key: str | None, inputs: tuple[int, int] | None) -> bytes:
    """A call job's header in its request (codeserve/sandbox/frames.py): "first stop [key]",
    the key of its bundle when its case is not sent inline."""
    first, stop = inputs or (0, -1)
    return (f"{first} {stop}" + (f" {key}" if key else "")).encode("utf-8", "surrogatepass")


def read_job_header(data: bytes) -> tuple[str | None, range | None]:
    """(bundle key or None, inputs) of a call job's header; inputs None: all of the case's."""
    first, stop, *key = data.decode("utf-8", "surrogatepass").split(" ", 2)
    return (key[0] if key else None), None if int(stop) < 0 else range(int(first), int(stop))


def case_bytes(case: CallCase) -> bytes:
    """A CallCase sent inline with its jobs (plain data: codeserve.sandbox.values), for the
    zygote to load once (`case_from_bytes`) and keep while the task's candidates come: no
    bundle, and so no round trip that would stall the jobs queued for a worker."""
    return values.encode(
        (case.entry_point, case.inputs, case.setup, case.exprs, case.presence, case.truths),
        cap=values.MAX_BYTES,
    )


def case_from_bytes(data: bytes) -> CallCase:
    entry_point, inputs, setup, exprs, presence, truths = values.decode(data)
    case = CallCase(entry_point, inputs, setup, exprs, presence, frozenset(truths))
    case.__setstate__(case.__getstate__())  # compiles the set-up code
    return case


def record(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def _text(text: str, limit: int = DETAIL_CHARS) -> bytes:
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "surrogatepass")


def _name(name: str | None) -> bytes:
    data = _text(name or "", 200)
    return _NAME.pack(len(data)) + data


def value_record(index: int, value: Any, presence: bool = False, truth: bool = False) -> bytes:
    """The record of one output (raises values.Refused when it is not plain data, MemoryError
    when it does not fit; `truth`: its truth value, whatever it raises)."""
    kind = b"V"
    if truth:
        kind, value = b"B", bool(value)
    elif presence and type(value) is not bool:
        kind, value = b"P", value is not None
    data = values.encode_or_digest(value)
    if isinstance(data, tuple):  # too big to send: its size and digest
        return digest_record(index, *data)
    return record(kind + _INDEX.pack(index) + data)


def digest_record(index: int, size: int, sha256: bytes) -> bytes:
    return record(b"H" + _INDEX.pack(index) + _SIZE.pack(size) + sha256)


def raised_record(index: int | None, category: str, error_type: str | None, detail: str) -> bytes:
    head = b"X" if index is None else b"E" + _INDEX.pack(index)
    return record(head + category.encode() + _name(error_type) + _text(detail))


def refused_record(index: int, reason: str) -> bytes:
    return record(b"U" + _INDEX.pack(index) + _text(reason))


def output_record(text: str) -> bytes:
    return record(b"O" + text.encode("utf-8", "surrogatepass"))


class Answer(NamedTuple):
    """One input's record, as parsed by the harness. `kind` is V, P, B, H, E or U; `position`
    the input's index; `data` the bytes of its body after that (for V/P/B the encoded value,
    for H size + digest)."""

    kind: str
    position: int
    data: bytes
    category: str = ""
    error_type: str | None = None
    detail: str = ""


class _Parsed(NamedTuple):
    ready: bool
    answers: list[Answer]
    failure: tuple[str, str | None, str] | None
    malformed: str | None
    output: str | None


class CallOutcome:
    """What a call job's process reported and how it ended: everything the judge needs.

    `blob` is every byte it wrote; `answers` its records for inputs, in the order written;
    `failure` is set when the program failed before any input (category, error type, detail);
    `malformed` says why the records stopped making sense, if they did; `ended` is how the
    process ended, as a verdict (status, detail) for the first input left unanswered. Parsed,
    and `ended` worked out, only when asked: most candidates are judged from `blob` alone."""

    def __init__(
        self,
        blob: bytes,
        ended: tuple[str, str] | Callable[[], tuple[str, str]],
        input_timeout: bool = False,
    ) -> None:
        self.blob = blob
        self.input_timeout = input_timeout
        self._ended = ended
        self._parsed: _Parsed | None = None

    @property
    def ended(self) -> tuple[str, str]:
        if callable(self._ended):
            self._ended = self._ended()
        return self._ended

    def _get(self) -> _Parsed:
        if self._parsed is None:
            self._parsed = _parse(self.blob)
        return self._parsed

    ready = property(lambda self: self._get().ready)
    answers = property(lambda self: self._get().answers)
    failure = property(lambda self: self._get().failure)
    malformed = property(lambda self: self._get().malformed)
    output = property(lambda self: self._get().output)


def parse(
    blob: bytes, ended: tuple[str, str] | Callable[[], tuple[str, str]], input_timeout: bool = False
) -> CallOutcome:
    """A call job's outcome from the bytes its process wrote and how it ended."""
    return CallOutcome(blob, ended, input_timeout)


def _parse(blob: bytes) -> _Parsed:
    """Read a call job's records (any bytes: the candidate's process may have written anything
    to its pipe; this never trusts a length or an index, it reports what does not fit)."""
    pos, n = 0, len(blob)
    ready, answers, failure, malformed, output = False, [], None, None, None
    while pos < n and malformed is None:
        if n - pos < 4:
            malformed = "a record cut short"
            break
        size = _LEN.unpack_from(blob, pos)[0]
        start, pos = pos + 4, pos + 4 + size
        if size == 0 or pos > n:
            malformed = "a record cut short" if size else "an empty record"
            break
        kind = chr(blob[start])
        body = start + 1
        try:
            if kind == "R" and size == 1 and not ready and failure is None:
                ready = True
            elif kind == "X" and not ready and failure is None:
                failure = _raised(blob, body, pos)
            elif kind in ANSWERS.decode() and ready and size >= 5:
                index = _INDEX.unpack_from(blob, body)[0]
                if kind == "E":
                    category, error_type, detail = _raised(blob, body + 4, pos)
                    answers.append(Answer(kind, index, b"", category, error_type, detail))
                elif kind == "U":
                    answers.append(Answer(kind, index, b"", detail=_str(blob, body + 4, pos)))
                elif kind == "H" and size != 1 + 4 + 8 + 32:
                    malformed = "a digest record of the wrong size"
                else:
                    answers.append(Answer(kind, index, blob[body + 4 : pos]))
            elif kind == "O" and output is None:
                output = _str(blob, body, pos)
            else:
                malformed = f"an unexpected record {kind!r}"
        except (ValueError, struct.error, UnicodeDecodeError):
            malformed = f"a malformed record {kind!r}"
    return _Parsed(ready, answers, failure, malformed, output)


def _str(blob: bytes, start: int, end: int) -> str:
    return blob[start:end].decode("utf-8", "surrogatepass")


def _raised(blob: bytes, start: int, end: int) -> tuple[str, str | None, str]:
    category = chr(blob[start])
    if category not in "ame":
        raise ValueError(category)
    n = _NAME.unpack_from(blob, start + 1)[0]
    name_end = start + 3 + n
    if name_end > end:
        raise ValueError("name past the end")
    return category, _str(blob, start + 3, name_end) or None, _str(blob, name_end, end)


def category_of(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return "a"
    if isinstance(exc, MemoryError):
        return "m"
    return "e"


class Writer:
    """The candidate's side: records into its pipe, all at the end or (when its inputs have
    time limits, which the zygote times by the records' arrival) one by one."""

    def __init__(self, fd: int, flush_each: bool) -> None:
        self.fd, self.flush_each, self.buffer = fd, flush_each, bytearray()

    def add(self, data: bytes) -> None:
        self.buffer += data
        if self.flush_each:
            self.flush()

    def flush(self) -> None:
        data, self.buffer = bytes(self.buffer), bytearray()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
